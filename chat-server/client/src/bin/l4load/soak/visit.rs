//! One visit of one soak client: it comes (a new [`Client`], which connects, and
//! reconnects and resumes by itself whenever the connection ends), joins its room,
//! sends a message every `send_every`, and at its leaving time says goodbye (a last
//! message) and waits until that message comes back to it and every send is acked.
//!
//! A visit is therefore bounded by two sequence numbers of its room: the head at its
//! join and its own goodbye. Every number between them must reach it once, in order,
//! carrying the message the ledger holds for that number (from whichever ack or
//! delivery saw it first): that is the delivery check. Each connection it saw and
//! each attempt that failed is counted, and recorded with the time, the close code
//! and the reason, and whether its flaky link (if any) was down.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use layer4_chat_client::protocol::ErrorCode;
use layer4_chat_client::{Client, ClientConfig, Event};
use serde_json::json;
use tokio::time::{Instant, sleep_until};

use super::link::Link;
use super::tally::{Tally, add, fingerprint, unix_ms};

/// Message bodies are padded to this many bytes, a short chat line.
const BODY_BYTES: usize = 80;

pub struct Plan<'a> {
    pub tally: &'a Tally,
    pub config: ClientConfig,
    pub client_no: usize,
    pub room: &'a str,
    pub room_no: u32,
    pub leave_at: Instant,
    pub leave_timeout: Duration,
    pub send_every: Duration,
    pub link: Option<&'a Link>,
}

#[derive(Default)]
struct Seen {
    /// The room's head when the join was confirmed, and the next number due.
    join: Option<u64>,
    next: u64,
    bye_id: Option<String>,
    bye_seq: Option<u64>,
    /// Sent and not yet acked: id to body.
    pending: HashMap<String, String>,
    lost: u64,
    connected_once: bool,
    failed_first: bool,
    /// The connection that is up, since when.
    up_since: Option<std::time::Instant>,
    /// The link's drop count when the current connection or attempt began.
    link_mark: u64,
    /// The first attempt failed while the link was down.
    first_failed_link: bool,
    sends: u64,
}

/// The send time written at the start of every body.
fn sent_ms(body: &str) -> Option<u64> {
    body.split(' ').next()?.strip_prefix("t=")?.parse().ok()
}

fn body(client_no: usize, n: u64, last: bool) -> String {
    let mut body = format!("t={} c={client_no} n={n}{} ", unix_ms(SystemTime::now()), if last { " bye" } else { "" });
    while body.len() < BODY_BYTES {
        body.push('.');
    }
    body
}

fn at_ms(at: std::time::Instant) -> u64 {
    unix_ms(SystemTime::now()).saturating_sub(at.elapsed().as_millis() as u64)
}

pub async fn visit(p: Plan<'_>) {
    let c = &p.tally.counts;
    add(&c.visits, 1);
    let started = std::time::Instant::now();
    let mut client = Client::start(p.config.clone());
    let sender = client.sender();
    let mut s = Seen { link_mark: p.link.map_or(0, Link::drops), ..Seen::default() };
    if client.join(p.room).await.is_err() {
        add(&c.stopped, 1);
        return;
    }
    let mut next_send = Instant::now() + p.send_every.mul_f64(rand::random_range(0.0..1.0));
    let give_up = p.leave_at + p.leave_timeout;
    loop {
        if s.bye_seq.is_some() && s.pending.is_empty() {
            break;
        }
        let now = Instant::now();
        if now >= give_up {
            break;
        }
        let leaving = now >= p.leave_at;
        if leaving && s.join.is_none() {
            break; // never joined: nothing was due, and a goodbye could not be bounded
        }
        // Nothing is sent before the join is confirmed: the visit's window starts there.
        if s.join.is_some() && ((leaving && s.bye_id.is_none()) || (!leaving && now >= next_send)) {
            s.sends += 1;
            let body = body(p.client_no, s.sends, leaving);
            let Ok(id) = sender.send(p.room, &body).await else { break };
            add(&c.sent, 1);
            s.pending.insert(id.clone(), body);
            if leaving {
                s.bye_id = Some(id);
            } else {
                next_send += p.send_every;
            }
            continue;
        }
        let wake = if s.bye_id.is_some() {
            give_up
        } else if s.join.is_none() {
            p.leave_at
        } else {
            next_send.min(p.leave_at)
        };
        tokio::select! {
            () = sleep_until(wake) => {}
            event = client.next_event() => {
                let Some(event) = event else { break };
                if !s.on(event, &p) {
                    break;
                }
            }
        }
    }
    if let Some(since) = s.up_since.take() {
        add(&c.connection_ms, since.elapsed().as_millis() as u64);
    }
    add(&c.visit_ms, started.elapsed().as_millis() as u64);
    if !s.connected_once && s.first_failed_link {
        add(&c.visits_lost_to_link, 1);
    }
    add(&c.unacked_at_leave, s.pending.len() as u64);
    match (s.join, s.bye_seq) {
        (Some(join), Some(bye)) if bye >= join => {
            add(&c.due, bye - join);
            if s.lost == 0 && s.pending.is_empty() {
                add(&c.visits_complete, 1);
            }
        }
        _ => {}
    }
    if s.bye_seq.is_none() || s.lost > 0 || !s.pending.is_empty() {
        p.tally.record(json!({"kind": "incomplete", "t": unix_ms(SystemTime::now()), "client": p.client_no,
            "room": p.room, "join": s.join, "bye": s.bye_seq, "lost": s.lost, "unacked": s.pending.len(),
            "connected": s.connected_once}));
    }
    client.close().await;
}

impl Seen {
    /// Takes one event; false when the client has stopped.
    fn on(&mut self, event: Event, p: &Plan<'_>) -> bool {
        let (c, link) = (&p.tally.counts, p.link);
        let link_drops = link.map_or(0, Link::drops);
        match event {
            Event::Connected { .. } => {
                add(&c.attempts, 1);
                add(&c.connections, 1);
                if !self.connected_once {
                    self.connected_once = true;
                    add(&c.visits_connected, 1);
                    if !self.failed_first {
                        add(&c.visits_first_ok, 1);
                    } else if self.first_failed_link {
                        add(&c.visits_first_failed_link, 1);
                    }
                }
                self.up_since = Some(std::time::Instant::now());
                self.link_mark = link_drops;
            }
            Event::Disconnected { code, reason, at, .. } => {
                // The link is to blame if it is down, or went down since this connection or
                // attempt began and came back within the heartbeat's time to notice.
                let slack = p.config.ping_after + p.config.pong_timeout + Duration::from_secs(15);
                let on_link = link.is_some_and(|l| l.blamed(self.link_mark, slack));
                let kind = if let Some(since) = self.up_since.take() {
                    add(&c.drops, 1);
                    add(&c.connection_ms, at.saturating_duration_since(since).as_millis() as u64);
                    if on_link {
                        add(&c.drops_link, 1);
                    }
                    "drop"
                } else {
                    add(&c.attempts, 1);
                    add(&c.attempts_failed, 1);
                    if on_link {
                        add(&c.attempts_failed_link, 1);
                    }
                    if !self.connected_once && !self.failed_first {
                        self.failed_first = true;
                        self.first_failed_link = on_link;
                    }
                    "failed"
                };
                self.link_mark = link_drops;
                p.tally.record(json!({"kind": kind, "t": at_ms(at), "client": p.client_no, "code": code,
                    "reason": reason, "link": on_link, "flaky": link.is_some()}));
            }
            Event::Joined { room, seq } if room == p.room && self.join.is_none() => {
                self.join = Some(seq);
                self.next = seq + 1;
            }
            Event::Message(m) if m.room == p.room => self.message(&m, p),
            Event::Acked { room, id, seq } if room == p.room => {
                if let Some(body) = self.pending.remove(&id) {
                    add(&c.acked, 1);
                    p.tally.ledger(p.room_no, seq, &id, fingerprint(&id, &body));
                }
            }
            Event::Gap { room, from, to } if room == p.room && self.bye_seq.is_none() => {
                let n = to.saturating_sub(from) + 1;
                add(&c.lost, n);
                self.lost += n;
                self.next = self.next.max(to + 1);
                p.tally.record(json!({"kind": "gap", "t": unix_ms(SystemTime::now()), "client": p.client_no,
                    "room": room, "from": from, "to": to}));
            }
            Event::Error { code, text, id, room } => {
                p.tally.error(&format!("{code:?}"));
                // `not_joined` for our own room is not final: the library joins again and
                // resends the message.
                let rejoining = code == ErrorCode::NotJoined && room.as_deref() == Some(p.room);
                if let Some(id) = id.filter(|_| code.is_permanent_for_send() && !rejoining)
                    && self.pending.remove(&id).is_some()
                {
                    add(&c.refused, 1);
                    p.tally.record(json!({"kind": "refused", "t": unix_ms(SystemTime::now()), "client": p.client_no,
                        "code": format!("{code:?}"), "text": text}));
                }
            }
            Event::Closed { reason } => {
                add(&c.stopped, 1);
                p.tally.record(json!({"kind": "stopped", "t": unix_ms(SystemTime::now()), "client": p.client_no,
                    "reason": reason}));
                return false;
            }
            _ => {}
        }
        true
    }

    fn message(&mut self, m: &layer4_chat_client::protocol::ChatMessage, p: &Plan<'_>) {
        let c = &p.tally.counts;
        add(&c.received, 1);
        p.tally.ledger(p.room_no, m.seq, &m.id, fingerprint(&m.id, &m.body));
        p.tally.delivered(sent_ms(&m.body), m.ts);
        if self.join.is_none() {
            add(&c.before_join, 1);
            return;
        }
        if self.bye_seq.is_some() {
            return; // past this visit's window
        }
        if m.seq == self.next {
            self.next += 1;
        } else if m.seq > self.next {
            let n = m.seq - self.next;
            add(&c.lost, n);
            self.lost += n;
            p.tally.record(
                json!({"kind": "jump", "t": unix_ms(SystemTime::now()), "client": p.client_no, "room": p.room, "expected": self.next, "got": m.seq}),
            );
            self.next = m.seq + 1;
        } else {
            add(&c.out_of_order, 1);
        }
        if self.bye_id.as_deref() == Some(m.id.as_str()) {
            self.bye_seq = Some(m.seq);
        }
    }
}
