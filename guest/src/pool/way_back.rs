//! The way back into rotation of every member out of it: what brings it
//! back by itself (its rest ends, the site's refresh or login, an answer
//! to its open ticket), or what a person must run. Refusals name it, and
//! `stats` lists the members that wait on a person.

use super::Pool;
use crate::lifecycle::RunMethod;
use crate::model::*;
use crate::ports::Host;
use crate::standing::NEVER;
use crate::words::kebab;

/// Members waiting on a person listed in a site's stats at most.
pub const MAX_LISTED_PEOPLE: usize = 100;

/// How a member out of rotation gets back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Way {
    /// Its rest ends by itself.
    Rest,
    /// The lifecycle runs this for it (the site's refresh or a login).
    Lifecycle(RunMethod),
    /// Its open challenge ticket waits for an answer.
    Ticket,
    /// Only a person can: this is what to do (`ID` stands for its id).
    Person(PersonNeed),
}

/// What a person must do, by why the member is stuck.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum PersonNeed {
    /// Banned: review it and lift the ban.
    Ban,
    /// Expired on a site with no refresh or login configured.
    Renew,
    /// Challenged, its ticket timed out or was given up; the site can log
    /// in again.
    Reset,
    /// Challenged on a site with no login configured.
    Solve,
}

impl PersonNeed {
    /// The action, for member `id` of `site`.
    pub(super) fn action(self, id: &str, site: &str) -> String {
        match self {
            PersonNeed::Ban => format!("review it, then `credpool unban {id}`"),
            PersonNeed::Renew => format!(
                "{site} has no refresh or login configured: renew it (log in elsewhere), then \
                 `credpool unban {id}`; or `credpool remove {id}`; or configure [sites.\"{site}\"]"
            ),
            PersonNeed::Reset => format!(
                "its challenge ticket went unanswered: `credpool challenge reset {id}` for a \
                 fresh login"
            ),
            PersonNeed::Solve => format!(
                "{site} has no login configured: solve the challenge on the site, then \
                 `credpool unban {id}`"
            ),
        }
    }
}

/// Members out of rotation, grouped by their way back.
#[derive(Debug, Default)]
pub(super) struct Ways {
    pub ticket: u32,
    /// By method the lifecycle will run.
    pub lifecycle: Vec<(RunMethod, u32)>,
    /// By what a person must do.
    pub person: Vec<(PersonNeed, u32)>,
}

impl Ways {
    fn add(&mut self, way: &Way) {
        match way {
            Way::Rest => {}
            Way::Ticket => self.ticket += 1,
            Way::Lifecycle(m) => bump(&mut self.lifecycle, *m, 1),
            Way::Person(p) => bump(&mut self.person, *p, 1),
        }
    }

    /// The refusal's lines: how each group gets back.
    pub fn lines(&self, site: &str) -> Vec<String> {
        let mut out = Vec::new();
        for (m, n) in &self.lifecycle {
            out.push(format!(
                "{n} will come back by the site's {} (run by `credpool run` or `serve`, or once \
                 by `credpool tick`)",
                kebab(*m)
            ));
        }
        if self.ticket > 0 {
            out.push(format!(
                "{} wait on a challenge answer: `credpool challenge list`, then `credpool \
                 challenge answer TICKET`",
                self.ticket
            ));
        }
        for (p, n) in &self.person {
            out.push(format!(
                "{n} need a person ({}; `credpool stats --site {site}` lists them): {}",
                match p {
                    PersonNeed::Ban => "banned",
                    PersonNeed::Renew => "expired",
                    PersonNeed::Reset | PersonNeed::Solve => "challenged",
                },
                p.action("ID", site)
            ));
        }
        out
    }
}

fn bump<K: PartialEq>(v: &mut Vec<(K, u32)>, k: K, n: u32) {
    if n == 0 {
        return;
    }
    match v.iter_mut().find(|(x, _)| *x == k) {
        Some((_, c)) => *c += n,
        None => v.push((k, n)),
    }
}

impl<H: Host> Pool<H> {
    /// The way back of member `slot` at `now`; none while it is in
    /// rotation.
    pub(super) fn way_of(&self, slot: u32, now: Millis) -> Option<Way> {
        let r = self.rec(slot);
        let id = &*r.id;
        let site = &self.sites[r.site as usize].name;
        Some(match r.m.status {
            Status::Cooling | Status::Suspended => Way::Rest,
            Status::Banned => Way::Person(PersonNeed::Ban),
            Status::Expired => self.expired_way(site),
            Status::Challenged => self.challenged_way(id, site),
            Status::Init | Status::Active => {
                // Past its expiry, expired at the next tick.
                if r.expires_at != NEVER && r.expires_at <= now {
                    self.expired_way(site)
                } else {
                    return None;
                }
            }
        })
    }

    fn expired_way(&self, site: &str) -> Way {
        match self.lc.revival(site) {
            Some(m) => Way::Lifecycle(m),
            None => Way::Person(PersonNeed::Renew),
        }
    }

    fn challenged_way(&self, id: &str, site: &str) -> Way {
        if self.lc.has_ticket(id) {
            Way::Ticket
        } else if !self.lc.can_relogin(site) {
            Way::Person(PersonNeed::Solve)
        } else if self.lc.is_held(id) {
            Way::Person(PersonNeed::Reset)
        } else {
            // A challenge met by a crawl: a fresh login is due.
            Way::Lifecycle(RunMethod::Relogin)
        }
    }

    /// The ways back of the given members at `now` (a filtered refusal's
    /// walk).
    pub(super) fn ways_of(&self, slots: impl Iterator<Item = u32>, now: Millis) -> Ways {
        let mut ways = Ways::default();
        for slot in slots {
            if let Some(w) = self.way_of(slot, now) {
                ways.add(&w);
            }
        }
        ways
    }

    /// The ways back of a whole site, from its counts and its (few) open
    /// tickets and held members: no walk of the members.
    pub(super) fn site_ways(&self, si: usize) -> Ways {
        let site = &self.sites[si];
        let name = site.name.as_str();
        let b = site.by_status;
        let (expired, challenged) = (b[Status::Expired as usize], b[Status::Challenged as usize]);
        let mut ways = Ways::default();
        bump(
            &mut ways.person,
            PersonNeed::Ban,
            b[Status::Banned as usize],
        );
        match self.expired_way(name) {
            Way::Lifecycle(m) => bump(&mut ways.lifecycle, m, expired),
            _ => bump(&mut ways.person, PersonNeed::Renew, expired),
        }
        if challenged == 0 {
            return ways;
        }
        let challenged_here = |id: &str| {
            self.by_id.get(id).is_some_and(|&s| {
                let r = self.rec(s);
                r.site as usize == si && r.m.status == Status::Challenged
            })
        };
        let mut with_ticket: Vec<String> = self
            .lc
            .open_tickets()
            .into_iter()
            .map(|t| t.credential_id)
            .filter(|id| challenged_here(id))
            .collect();
        with_ticket.sort();
        with_ticket.dedup();
        ways.ticket = with_ticket.len() as u32;
        let rest = challenged.saturating_sub(ways.ticket);
        if !self.lc.can_relogin(name) {
            bump(&mut ways.person, PersonNeed::Solve, rest);
        } else {
            let held = self
                .lc
                .held_ids()
                .filter(|id| {
                    challenged_here(id)
                        && with_ticket
                            .binary_search_by(|t| t.as_str().cmp(id))
                            .is_err()
                })
                .count() as u32;
            bump(&mut ways.person, PersonNeed::Reset, held.min(rest));
            bump(
                &mut ways.lifecycle,
                RunMethod::Relogin,
                rest - held.min(rest),
            );
        }
        ways
    }

    /// The members of site `si` that wait on a person, in id order (at
    /// most [`MAX_LISTED_PEOPLE`]), and how many there are. Walks the
    /// site only when its counts say some may.
    pub(super) fn needs_person(&self, si: usize) -> (Vec<PersonAction>, u32) {
        let site = &self.sites[si];
        let b = site.by_status;
        let out_of_rotation = b[Status::Banned as usize]
            + b[Status::Expired as usize]
            + b[Status::Challenged as usize];
        if out_of_rotation == 0 {
            return (Vec::new(), 0);
        }
        let mut all: Vec<(&str, Status, PersonNeed)> = site
            .members
            .iter()
            .filter(|&&s| {
                matches!(
                    self.rec(s).m.status,
                    Status::Banned | Status::Expired | Status::Challenged
                )
            })
            // Only these statuses reach a person: `now` is not read.
            .filter_map(|&s| match self.way_of(s, NEVER)? {
                Way::Person(p) => {
                    let r = self.rec(s);
                    Some((&*r.id, r.m.status, p))
                }
                _ => None,
            })
            .collect();
        let total = all.len() as u32;
        all.sort_unstable_by(|a, b| a.0.cmp(b.0));
        all.truncate(MAX_LISTED_PEOPLE);
        let list = all
            .into_iter()
            .map(|(id, status, p)| PersonAction {
                credential_id: id.to_string(),
                status,
                action: p.action(id, &site.name),
            })
            .collect();
        (list, total)
    }
}
