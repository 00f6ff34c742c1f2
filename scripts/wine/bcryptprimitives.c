/*
 * bcryptprimitives.dll for Wine 8.0 (Debian 12), which lacks it.
 *
 * Rust's standard library (1.78 and later) takes its random numbers from ProcessPrng in
 * bcryptprimitives.dll, which every supported Windows has and Wine gained only later; without
 * it no Rust program starts under Debian's Wine. This stand-in, built by scripts/test-windows
 * with Debian's mingw-w64 and put into the Wine prefix (never shipped to Windows), forwards
 * to BCryptGenRandom, which Wine 8.0 has.
 */
#include <windows.h>
#include <bcrypt.h>

BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len)
{
    while (len > 0) {
        ULONG chunk = len > 0x10000000 ? 0x10000000 : (ULONG)len;
        if (BCryptGenRandom(NULL, data, chunk, BCRYPT_USE_SYSTEM_PREFERRED_RNG) != 0)
            return FALSE;
        data += chunk;
        len -= chunk;
    }
    return TRUE;
}
