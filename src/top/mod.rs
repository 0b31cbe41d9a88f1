//! `tandem top [--socket PATH]`: a live terminal view of a node over its control socket,
//! refreshed every second (`model` reads the node, `view` draws it). Keys: 1 backends and
//! services, 2 ports and drops, 3 cluster nodes, s to sort the backends, q or Esc to quit.
//! Works in 80x24 over SSH: plain text and block characters, no mouse.

mod model;
mod view;

use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

const REFRESH: Duration = Duration::from_secs(1);

pub fn run(socket: &Path) -> ExitCode {
    // Refuse at once, before the terminal is taken over, when there is no node to watch.
    if let Err(e) = tandem_control::client::request(socket, "show stats") {
        eprintln!("tandem top: {e:#}");
        return ExitCode::from(2);
    }
    let mut terminal = ratatui::init();
    let mut m = model::Model::default();
    let (mut view, mut sort) = (view::View::default(), model::Sort::default());
    let mut next = Instant::now();
    let outcome = loop {
        if Instant::now() >= next {
            m.refresh(socket);
            next = Instant::now() + REFRESH;
        }
        if let Err(e) = terminal.draw(|f| view::draw(f, &m, view, sort)) {
            break Err(e);
        }
        let wait = next.saturating_duration_since(Instant::now());
        match event::poll(wait) {
            Ok(false) => continue,
            Ok(true) => {}
            Err(e) => break Err(e),
        }
        match event::read() {
            Ok(Event::Key(k)) if k.kind == KeyEventKind::Press => match k.code {
                KeyCode::Char('q') | KeyCode::Esc => break Ok(()),
                KeyCode::Char('c') if k.modifiers.contains(KeyModifiers::CONTROL) => break Ok(()),
                KeyCode::Char('1') => view = view::View::Backends,
                KeyCode::Char('2') => view = view::View::Ports,
                KeyCode::Char('3') => view = view::View::Nodes,
                KeyCode::Tab => {
                    view = match view {
                        view::View::Backends => view::View::Ports,
                        view::View::Ports => view::View::Nodes,
                        view::View::Nodes => view::View::Backends,
                    }
                }
                KeyCode::Char('s') => sort = sort.next(),
                _ => {}
            },
            Ok(_) => {}
            Err(e) => break Err(e),
        }
    };
    ratatui::restore();
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tandem top: {e}");
            ExitCode::from(2)
        }
    }
}
