//! How much history a store keeps (`--history-keep`): everything, a span of time, or a size.

use std::fmt;

/// How much history a store keeps: everything, the newest span of time of each stream, or a
/// total size. Whole sealed chunks go, oldest first; a stream's newest chunk always stays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Keep {
    /// Keep everything (the default).
    #[default]
    All,
    /// Keep the chunks holding anything newer than this many seconds before each stream's
    /// newest record.
    Seconds(i64),
    /// Keep the store under this many bytes.
    Bytes(u64),
}

/// A `--history-keep` value that is neither a duration nor a size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeepError(pub String);

impl fmt::Display for KeepError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid history retention {:?}: expected `all`, a duration (90d, 12h, 30m) or a \
             size (500MB, 2GB, 1GiB)",
            self.0
        )
    }
}

impl std::error::Error for KeepError {}

impl std::str::FromStr for Keep {
    type Err = KeepError;

    /// `all`; `90d`, `12h`, `30m`, `2w`; `500MB`, `2GB`, `1GiB`, `800MiB`, `10000000` bytes.
    fn from_str(s: &str) -> Result<Keep, KeepError> {
        let bad = || KeepError(s.to_owned());
        let t = s.trim();
        if t.eq_ignore_ascii_case("all") {
            return Ok(Keep::All);
        }
        let digits = t.bytes().take_while(u8::is_ascii_digit).count();
        let (num, unit) = t.split_at(digits);
        let n: u64 = num.parse().map_err(|_| bad())?;
        if n == 0 {
            return Err(bad());
        }
        let secs = |k: u64| {
            n.checked_mul(k)
                .and_then(|v| i64::try_from(v).ok())
                .map(Keep::Seconds)
                .ok_or_else(bad)
        };
        let bytes = |k: u64| n.checked_mul(k).map(Keep::Bytes).ok_or_else(bad);
        match unit.trim() {
            "m" | "min" => secs(60),
            "h" => secs(3600),
            "d" => secs(86_400),
            "w" => secs(7 * 86_400),
            "" | "B" => bytes(1),
            "kB" | "KB" => bytes(1000),
            "MB" => bytes(1_000_000),
            "GB" => bytes(1_000_000_000),
            "KiB" => bytes(1 << 10),
            "MiB" => bytes(1 << 20),
            "GiB" => bytes(1 << 30),
            _ => Err(bad()),
        }
    }
}
