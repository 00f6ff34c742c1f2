//! The mirror's own history store: every bar and tick it mirrors, kept on disk as the
//! origin's streamer keeps its own (docs/LAYOUT.md, "History store").

use shm_core::Writer;

use super::Mirror;

impl Mirror {
    /// Attaches the mirror's own history store to its new writer. A segment built anew
    /// because it held bars the origin never had (`start_clean`) starts a new store too: the
    /// old one is moved aside (`DIR.set-aside-<unix seconds>`), since a bar stamped ahead
    /// would hold every later one out of an append-only store. A store that cannot be opened
    /// is said once, and the rings work without it.
    pub(super) fn attach_history(
        &self,
        w: &mut Writer,
        layout: &shm_core::Layout,
        start_clean: bool,
    ) {
        let Some(dir) = self.config.history.dir(&self.config.segment) else {
            return;
        };
        if start_clean && dir.exists() {
            let mut aside = dir.clone().into_os_string();
            aside.push(format!(".set-aside-{}", shm_core::now_ns() / 1_000_000_000));
            match std::fs::rename(&dir, &aside) {
                Ok(()) => eprintln!(
                    "mtf-mirror: history store {} set aside as {} (the segment is rebuilt from \
                     the origin)",
                    dir.display(),
                    std::path::Path::new(&aside).display()
                ),
                Err(e) => eprintln!(
                    "warning: mtf-mirror: history store {} could not be set aside: {e}",
                    dir.display()
                ),
            }
        }
        let mode = self.config.options.mode;
        match shm_core::HistoryWriter::open(&dir, layout, shm_core::Keep::All, mode) {
            Ok(h) => w.attach_history(h),
            Err(e) => {
                w.add(shm_core::Counter::HistoryErrors, 1);
                eprintln!(
                    "warning: mtf-mirror: no history store: {e}; readers get what the rings hold"
                );
            }
        }
    }
}
