//! The control socket's command parser against arbitrary lines, and every command it
//! accepts run against a node's control state: an answer for each, `ok` true or an error
//! that says something, never a panic.

#![no_main]

use libfuzzer_sys::fuzz_target;
use std::cell::RefCell;
use std::sync::Arc;
use tandem_control::commands;
use tandem_control::state::{Control, WorkerLink};
use tandem_dataplane::counters::WorkerCounters;
use tandem_dataplane::services::PortInfo;

fn control() -> (
    Control,
    crossbeam_channel::Receiver<tandem_dataplane::messages::ToWorker>,
) {
    let cfg = tandem_fuzz::config(false);
    let ports: Vec<PortInfo> = cfg
        .ports
        .iter()
        .zip(tandem_fuzz::PORT_MACS)
        .map(|(p, m)| PortInfo::from_config(p, m))
        .collect();
    let (tx, rx) = crossbeam_channel::bounded(1 << 10);
    let (_ftx, frx) = crossbeam_channel::bounded(1);
    let link = WorkerLink::new(tx, frx, Arc::new(WorkerCounters::default()));
    (Control::new(cfg, ports, vec![link]), rx)
}

thread_local! {
    /// The control state and the worker's end of its inbox (emptied as a worker would).
    static CTL: RefCell<(Control, crossbeam_channel::Receiver<tandem_dataplane::messages::ToWorker>)> =
        RefCell::new(control());
}

fuzz_target!(|data: &[u8]| {
    let line = String::from_utf8_lossy(data);
    let parsed = commands::parse(&line);
    CTL.with(|c| {
        let (ctl, inbox) = &mut *c.borrow_mut();
        let v = commands::execute(ctl, &line);
        while inbox.try_recv().is_ok() {}
        assert_eq!(
            v["ok"].as_bool() == Some(true) || v["error"].is_string(),
            true
        );
        if parsed.is_err() {
            assert_eq!(v["ok"], false);
            assert!(v["error"].as_str().is_some_and(|e| !e.is_empty()));
        }
    });
});
