//! The subjects of one origin segment, and who asks on them.
//!
//! - `mtf.<segment>.candles.<SYMBOL>.<TF>`, `mtf.<segment>.ticks.<SYMBOL>` and
//!   `mtf.<segment>.status`: published by the origin only.
//! - `mtf.<segment>.req.<KIND>` and `mtf.<segment>.req.<KIND>.<MIRROR-ID>`: the requests the
//!   origin answers (`layout`, `history`, `ticks`, `symbol`).
//!
//! **Why a mirror names itself in its subjects (issue 40).** NATS does not tell a subscriber who
//! published a message, and a reply subject is whatever the asker wrote. So a limit keyed by
//! the reply subject can be escaped by inventing a new one per request, and an answer can be
//! sent into another mirror's inbox. The server can tell accounts apart by what it lets each
//! publish and subscribe to: in the secured configuration of docs/NATS.md, mirror `ID` may
//! publish only `mtf.<segment>.req.*.ID` and read only its own inbox `_INBOX.ID.>`. The id in
//! the subject is then unforgeable, the origin limits per id, and it answers only into that
//! id's inbox: a mirror account can neither spend another's share nor aim an answer at it.

use std::fmt;

use shm_core::Timeframe;

/// A symbol as one subject token: NATS splits subjects at `.`, and gives `*` and `>` meaning,
/// and MT5 symbols may hold a dot (`EURUSD.pro`). Those bytes, and `%`, are written `%XX`.
pub fn subject_token(symbol: &str) -> String {
    let mut out = String::with_capacity(symbol.len());
    for c in symbol.chars() {
        match c {
            '.' | '*' | '>' | '%' | ' ' => out.push_str(&format!("%{:02X}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// The name a mirror asks under (`--nats-mirror-id`): one subject token of 1 to 64 ASCII
/// letters, digits, `-` and `_`, so that it can stand in a permission of the server's
/// configuration as it is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MirrorId(String);

/// A mirror id that is not one subject token of letters, digits, `-` and `_`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadMirrorId {
    /// What was given.
    pub found: String,
}

impl fmt::Display for BadMirrorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?} is not a mirror id: 1 to {} ASCII letters, digits, '-' and '_'",
            self.found,
            MirrorId::MAX_LEN
        )
    }
}

impl std::error::Error for BadMirrorId {}

impl MirrorId {
    /// The longest id.
    pub const MAX_LEN: usize = 64;

    /// `id`, if it is one.
    pub fn new(id: &str) -> Result<MirrorId, BadMirrorId> {
        let good = !id.is_empty()
            && id.len() <= MirrorId::MAX_LEN
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if good {
            Ok(MirrorId(id.to_owned()))
        } else {
            Err(BadMirrorId {
                found: id.chars().take(MirrorId::MAX_LEN + 1).collect(),
            })
        }
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The mirror's inbox prefix (`_INBOX.<ID>`): its client's reply subjects are below it.
    pub fn inbox(&self) -> String {
        format!("_INBOX.{}", self.0)
    }

    /// Whether `reply` is in this mirror's inbox.
    pub fn owns_reply(&self, reply: &str) -> bool {
        reply
            .strip_prefix("_INBOX.")
            .and_then(|rest| rest.strip_prefix(self.0.as_str()))
            .is_some_and(|rest| rest.starts_with('.'))
    }
}

/// What a request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestKind {
    /// The rings, tick depth and terminal.
    Layout,
    /// A page of a ring's closed bars.
    History,
    /// A page of a symbol's ticks.
    Ticks,
    /// A symbol's information.
    Symbol,
}

impl RequestKind {
    fn token(self) -> &'static str {
        match self {
            RequestKind::Layout => "layout",
            RequestKind::History => "history",
            RequestKind::Ticks => "ticks",
            RequestKind::Symbol => "symbol",
        }
    }

    fn from_token(token: &str) -> Option<RequestKind> {
        [
            RequestKind::Layout,
            RequestKind::History,
            RequestKind::Ticks,
            RequestKind::Symbol,
        ]
        .into_iter()
        .find(|k| k.token() == token)
    }
}

/// A request as its subject names it: what it asks, and under which mirror id, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestSubject {
    /// What it asks.
    pub kind: RequestKind,
    /// The mirror that asks, if it named itself.
    pub mirror: Option<MirrorId>,
}

/// The subjects of one origin segment, as one side uses them: the origin, or a mirror that
/// asks under its id (or under none, on an open server).
#[derive(Debug, Clone)]
pub struct Subjects {
    prefix: String,
    mirror: Option<MirrorId>,
}

impl Subjects {
    /// The subjects of segment `name`, for the origin or for a mirror without an id.
    pub fn new(name: &str) -> Subjects {
        Subjects {
            prefix: format!("mtf.{}", subject_token(name)),
            mirror: None,
        }
    }

    /// The subjects of segment `name` for mirror `id`: its requests name it.
    pub fn for_mirror(name: &str, id: Option<MirrorId>) -> Subjects {
        Subjects {
            mirror: id,
            ..Subjects::new(name)
        }
    }

    /// Whether `subject` is one of these subjects, or below them: the origin never publishes
    /// an answer there (a reply-to naming its candle subjects would forge its messages).
    pub fn owns(&self, subject: &str) -> bool {
        subject == self.prefix
            || subject
                .strip_prefix(self.prefix.as_str())
                .is_some_and(|rest| rest.starts_with('.'))
    }

    /// Where a ring's candles go.
    pub fn candles(&self, symbol: &str, timeframe: Timeframe) -> String {
        format!(
            "{}.candles.{}.{}",
            self.prefix,
            subject_token(symbol),
            timeframe.name()
        )
    }

    /// Every ring's candles, for a subscription.
    pub fn all_candles(&self) -> String {
        format!("{}.candles.>", self.prefix)
    }

    /// The writer's status.
    pub fn status(&self) -> String {
        format!("{}.status", self.prefix)
    }

    /// Where a symbol's ticks go.
    pub fn ticks(&self, symbol: &str) -> String {
        format!("{}.ticks.{}", self.prefix, subject_token(symbol))
    }

    /// Every symbol's ticks, for a subscription.
    pub fn all_ticks(&self) -> String {
        format!("{}.ticks.>", self.prefix)
    }

    /// Where this side asks for `kind`: with the mirror's id, if it has one.
    pub fn request(&self, kind: RequestKind) -> String {
        match &self.mirror {
            Some(id) => format!("{}.req.{}.{}", self.prefix, kind.token(), id.as_str()),
            None => format!("{}.req.{}", self.prefix, kind.token()),
        }
    }

    /// Every request, for the origin's one subscription.
    pub fn all_requests(&self) -> String {
        format!("{}.req.>", self.prefix)
    }

    /// What a request subject asks, and who asks; `None` for a subject that is not a request.
    pub fn parse_request(&self, subject: &str) -> Option<RequestSubject> {
        let rest = subject
            .strip_prefix(self.prefix.as_str())?
            .strip_prefix(".req.")?;
        let (kind, mirror) = match rest.split_once('.') {
            Some((kind, id)) => (kind, Some(MirrorId::new(id).ok()?)),
            None => (rest, None),
        };
        Some(RequestSubject {
            kind: RequestKind::from_token(kind)?,
            mirror,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_origin_never_answers_into_its_own_subjects() {
        let s = Subjects::new("desk");
        assert!(s.owns("mtf.desk.candles.EURUSD.M1"));
        assert!(s.owns("mtf.desk"));
        assert!(!s.owns("mtf.desk2.candles.EURUSD.M1"));
        assert!(!s.owns("_INBOX.abc.1"));
    }

    #[test]
    fn symbols_with_subject_characters_become_one_token() {
        assert_eq!(subject_token("EURUSD.pro"), "EURUSD%2Epro");
        assert_eq!(subject_token("US30#"), "US30#");
        assert_eq!(subject_token("A*B>C%"), "A%2AB%3EC%25");
        let s = Subjects::new("mtf-candles");
        assert_eq!(
            s.candles("EURUSD.pro", Timeframe::M1),
            "mtf.mtf-candles.candles.EURUSD%2Epro.M1"
        );
    }

    #[test]
    fn a_mirror_id_is_one_plain_token() {
        for good in ["a", "mirror-1", "DESK_B", &"x".repeat(64)] {
            assert_eq!(MirrorId::new(good).unwrap().as_str(), good);
        }
        for bad in ["", "a.b", "a*", ">", "a b", "é", &"x".repeat(65)] {
            assert!(MirrorId::new(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn requests_name_their_kind_and_their_mirror() {
        let id = MirrorId::new("mirror-a").unwrap();
        let mirror = Subjects::for_mirror("desk", Some(id.clone()));
        let origin = Subjects::new("desk");
        for kind in [
            RequestKind::Layout,
            RequestKind::History,
            RequestKind::Ticks,
            RequestKind::Symbol,
        ] {
            let asked = origin.parse_request(&mirror.request(kind)).unwrap();
            assert_eq!(asked.kind, kind);
            assert_eq!(asked.mirror.as_ref(), Some(&id));
            let open = origin.parse_request(&origin.request(kind)).unwrap();
            assert_eq!((open.kind, open.mirror), (kind, None));
        }
        assert_eq!(
            mirror.request(RequestKind::Ticks),
            "mtf.desk.req.ticks.mirror-a"
        );
        for not in [
            "mtf.desk.req.orders",
            "mtf.desk.req.layout.a.b",
            "mtf.desk.req",
            "mtf.desk2.req.layout",
            "mtf.desk.candles.X.M1",
        ] {
            assert_eq!(origin.parse_request(not), None, "{not}");
        }
    }

    #[test]
    fn a_mirror_owns_only_its_own_inbox() {
        let id = MirrorId::new("a").unwrap();
        assert_eq!(id.inbox(), "_INBOX.a");
        assert!(id.owns_reply("_INBOX.a.xyz.1"));
        assert!(!id.owns_reply("_INBOX.ab.1"));
        assert!(!id.owns_reply("_INBOX.a"));
        assert!(!id.owns_reply("_INBOX.b.a.1"));
        assert!(!id.owns_reply("mtf.desk.candles.a.1"));
    }
}
