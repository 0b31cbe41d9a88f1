//! Where each service and backend sits in the snapshot's tables: its id. Flow records,
//! counters, histograms and admission counts all name backends and services by id, so an id
//! must outlive every change around it: a backend added takes a fresh id, one removed keeps
//! its id while it drains (its flows go on naming it) and gives it back only when it is gone.
//! A vacated id is handed out again only when no fresh one is left, oldest first, so a stale
//! reference to it is as unlikely as the id space allows.

use std::collections::VecDeque;
use std::time::Instant;
use tandem_config::{BackendConfig, BackendState, ServiceConfig, MAX_BACKENDS, MAX_SERVICES};

/// A backend in its service, with its id.
#[derive(Debug, Clone)]
pub struct Seat {
    pub id: u16,
    /// Removed (when): drains, then is vacated (`Layout::vacate_backend`).
    pub removed: Option<Instant>,
    pub cfg: BackendConfig,
}

/// A service with its id and its backends.
#[derive(Debug, Clone)]
pub struct Placed {
    pub id: u16,
    /// Removed (when): every backend drains, then the service is vacated.
    pub removed: Option<Instant>,
    pub cfg: ServiceConfig,
    /// The service's backends, in order (`cfg.backends` is left empty: these hold them).
    pub seats: Vec<Seat>,
}

impl Placed {
    pub fn seat(&self, name: &str) -> Option<&Seat> {
        self.seats.iter().find(|s| s.cfg.name == name)
    }

    /// The service as configured: without its removed backends.
    pub fn config(&self) -> ServiceConfig {
        let mut c = self.cfg.clone();
        c.backends = self
            .seats
            .iter()
            .filter(|s| s.removed.is_none())
            .map(|s| s.cfg.clone())
            .collect();
        c
    }

    /// The service as the snapshot builds it: every backend that still has an id, with
    /// whether it is removed (then draining).
    pub fn running(&self) -> impl Iterator<Item = (u16, BackendConfig, bool)> + '_ {
        self.seats.iter().map(|s| {
            let mut b = s.cfg.clone();
            let removed = s.removed.is_some() || self.removed.is_some();
            if removed {
                b.state = BackendState::Draining;
            }
            (s.id, b, removed)
        })
    }
}

#[derive(Debug, Clone, Default)]
struct Ids {
    next: usize,
    max: usize,
    free: VecDeque<u16>,
}

impl Ids {
    fn new(max: usize) -> Ids {
        Ids {
            max,
            ..Ids::default()
        }
    }
    fn take(&mut self) -> Option<u16> {
        if self.next < self.max {
            self.next += 1;
            return Some((self.next - 1) as u16);
        }
        self.free.pop_front()
    }
    fn give_back(&mut self, id: u16) {
        self.free.push_back(id);
    }
}

/// The services a node runs, by id (see the module's doc).
#[derive(Debug, Clone)]
pub struct Layout {
    /// In configuration order; removed services stay until vacated.
    pub services: Vec<Placed>,
    backend_ids: Ids,
    service_ids: Ids,
}

impl Layout {
    /// Ids in order: services 0.., backends numbered over every service's list in turn.
    pub fn new(services: &[ServiceConfig]) -> Layout {
        let mut l = Layout {
            services: Vec::new(),
            backend_ids: Ids::new(MAX_BACKENDS),
            service_ids: Ids::new(MAX_SERVICES),
        };
        for s in services {
            // A config that passed validation fits the id space; one that does not is cut
            // where it runs out (the tests build such layouts only through validation).
            if l.add_service(s.clone()).is_err() {
                break;
            }
        }
        l
    }

    /// One past the highest backend id handed out: the length of tables indexed by it.
    pub fn backend_slots(&self) -> usize {
        self.backend_ids.next
    }

    pub fn service_slots(&self) -> usize {
        self.service_ids.next
    }

    pub fn service(&self, name: &str) -> Option<&Placed> {
        self.services.iter().find(|s| s.cfg.name == name)
    }

    pub fn service_mut(&mut self, name: &str) -> Option<&mut Placed> {
        self.services.iter_mut().find(|s| s.cfg.name == name)
    }

    pub fn by_id(&self, id: u16) -> Option<&Placed> {
        self.services.iter().find(|s| s.id == id)
    }

    /// Every backend with an id: (service, its seat).
    pub fn seats(&self) -> impl Iterator<Item = (&Placed, &Seat)> {
        self.services
            .iter()
            .flat_map(|p| p.seats.iter().map(move |s| (p, s)))
    }

    pub fn seat_of(&self, backend: u16) -> Option<(&Placed, &Seat)> {
        self.seats().find(|(_, s)| s.id == backend)
    }

    /// The services as configured now (what `show config` prints): no removed ones.
    pub fn config(&self) -> Vec<ServiceConfig> {
        self.services
            .iter()
            .filter(|p| p.removed.is_none())
            .map(Placed::config)
            .collect()
    }

    /// Adds a service with its backends (fresh ids); fails when the ids run out.
    pub fn add_service(&mut self, mut cfg: ServiceConfig) -> Result<u16, String> {
        let backends = std::mem::take(&mut cfg.backends);
        let ids = &self.backend_ids;
        if ids.max - ids.next + ids.free.len() < backends.len() {
            return Err(format!("at most {MAX_BACKENDS} backends over all services"));
        }
        let id = self
            .service_ids
            .take()
            .ok_or_else(|| format!("at most {MAX_SERVICES} services"))?;
        let mut placed = Placed {
            id,
            removed: None,
            cfg,
            seats: Vec::new(),
        };
        for b in backends {
            let Some(bid) = self.backend_ids.take() else {
                for s in &placed.seats {
                    self.backend_ids.give_back(s.id);
                }
                self.service_ids.give_back(id);
                return Err(format!("at most {MAX_BACKENDS} backends over all services"));
            };
            placed.seats.push(Seat {
                id: bid,
                removed: None,
                cfg: b,
            });
        }
        self.services.push(placed);
        Ok(id)
    }

    /// Adds a backend to a service under a fresh id.
    pub fn add_backend(&mut self, service: &str, cfg: BackendConfig) -> Result<u16, String> {
        let Some(i) = self.services.iter().position(|s| s.cfg.name == service) else {
            return Err(format!("no service named \"{service}\""));
        };
        let id = self
            .backend_ids
            .take()
            .ok_or_else(|| format!("at most {MAX_BACKENDS} backends over all services"))?;
        self.services[i].seats.push(Seat {
            id,
            removed: None,
            cfg,
        });
        Ok(id)
    }

    /// Vacates a removed backend: its id goes back to be handed out again.
    pub fn vacate_backend(&mut self, id: u16) {
        for p in &mut self.services {
            if let Some(i) = p.seats.iter().position(|s| s.id == id) {
                p.seats.remove(i);
                self.backend_ids.give_back(id);
                return;
            }
        }
    }

    /// Vacates a removed service and whatever backends it still has.
    pub fn vacate_service(&mut self, id: u16) {
        if let Some(i) = self.services.iter().position(|s| s.id == id) {
            let p = self.services.remove(i);
            for s in p.seats {
                self.backend_ids.give_back(s.id);
            }
            self.service_ids.give_back(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tandem_config::Config;

    fn layout() -> Layout {
        let cfg = Config::from_toml(crate::pipeline::tests::CONFIG).unwrap();
        Layout::new(&cfg.services)
    }

    #[test]
    fn ids_are_positional_at_start_and_stable_after() {
        let mut l = layout();
        let ids: Vec<u16> = l.seats().map(|(_, s)| s.id).collect();
        assert_eq!(ids, (0..ids.len() as u16).collect::<Vec<_>>());
        let first = l.services[0].cfg.name.clone();
        let template = l.services[1].seats[0].cfg.clone();
        let second = l.services[1].seats[0].id;
        // A backend added to the first service does not move the second's.
        let new = l.add_backend(&first, template).unwrap();
        assert_eq!(usize::from(new), ids.len());
        assert_eq!(l.services[1].seats[0].id, second);
        assert_eq!(l.services[0].seats.last().map(|s| s.id), Some(new));
        // Vacating keeps every other id and leaves the table as long.
        let gone = l.services[0].seats[0].id;
        l.vacate_backend(gone);
        assert_eq!(l.backend_slots(), ids.len() + 1);
        assert!(l.seat_of(gone).is_none());
        assert!(l.seat_of(new).is_some());
    }

    #[test]
    fn a_vacated_id_comes_back_only_when_fresh_ones_run_out() {
        let mut l = layout();
        let svc = l.services[0].cfg.name.clone();
        let template = l.services[0].seats[0].cfg.clone();
        let gone = l.services[0].seats[0].id;
        l.vacate_backend(gone);
        let mut handed = Vec::new();
        while let Ok(id) = l.add_backend(&svc, template.clone()) {
            handed.push(id);
        }
        assert_eq!(handed.last(), Some(&gone));
        assert_eq!(handed.iter().filter(|&&i| i == gone).count(), 1);
        assert_eq!(l.backend_slots(), MAX_BACKENDS);
    }

    #[test]
    fn config_leaves_out_what_is_being_removed() {
        let mut l = layout();
        l.services[0].seats[0].removed = Some(Instant::now());
        l.services[1].removed = Some(Instant::now());
        let c = l.config();
        assert_eq!(c.len(), l.services.len() - 1);
        assert_eq!(c[0].backends.len(), l.services[0].seats.len() - 1);
        let running: Vec<_> = l.services[0].running().collect();
        assert_eq!(running[0].1.state, BackendState::Draining);
    }
}
