//! A subscribed tick stream.

use std::io::{self};

use crate::conn::Conn;
use crate::error::Error;
use crate::wire::{StreamLine, Tick, MAX_LINE};

/// What a tick stream delivers.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A tick.
    Tick {
        /// Its symbol.
        symbol: String,
        /// The tick.
        tick: Tick,
    },
    /// The gateway is alive but had no tick to send (at least every second).
    Heartbeat,
    /// The stream is over (a csv replay reached its end); further reads fail.
    End {
        /// Why.
        reason: String,
    },
}

/// A subscribed connection.
#[derive(Debug)]
pub struct TickStream {
    pub(crate) conn: Conn,
    pub(crate) ended: bool,
}

impl TickStream {
    /// Waits for the next event, at most the read timeout (the gateway heartbeats every second,
    /// so a timeout means it is gone).
    pub fn next_event(&mut self) -> Result<Event, Error> {
        let op = "subscribe_ticks";
        if self.ended {
            return Err(Error::Disconnected {
                op: op.into(),
                source: io::ErrorKind::UnexpectedEof.into(),
            });
        }
        // An event must arrive within the read timeout as a whole (the gateway heartbeats
        // every second), however its bytes trickle in.
        let within = self.conn.read_timeout;
        let line = self.conn.receive_line(op, MAX_LINE, within)?;
        let ev: StreamLine = serde_json::from_slice(&line)
            .map_err(|e| Error::Protocol(format!("bad stream line: {e}")))?;
        match ev.event.as_deref() {
            Some("tick") => match (ev.symbol, ev.tick) {
                (Some(symbol), Some(tick)) => Ok(Event::Tick { symbol, tick }),
                _ => Err(Error::Protocol("tick without symbol or tick".into())),
            },
            Some("heartbeat") => Ok(Event::Heartbeat),
            Some("end") => {
                self.ended = true;
                Ok(Event::End {
                    reason: ev.reason.unwrap_or_default(),
                })
            }
            other => Err(Error::Protocol(format!(
                "unexpected stream event {:?}",
                other.map(|o| o.chars().take(40).collect::<String>())
            ))),
        }
    }
}
