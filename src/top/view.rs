//! `tandem top`'s screen: a header line, one of three views (backends and services; ports
//! and drops; cluster nodes), and a line of keys. Laid out for 80x24 and up.

use super::model::{Model, Sort, HISTORY};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Block, Borders, Paragraph, Row, Table};
use ratatui::Frame;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum View {
    #[default]
    Backends,
    Ports,
    Nodes,
}

/// The last `width` values as a line of block characters, scaled to their maximum.
pub fn sparkline(values: impl Iterator<Item = u64> + Clone, width: usize) -> String {
    const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let all: Vec<u64> = values.collect();
    let tail = &all[all.len().saturating_sub(width)..];
    let max = tail.iter().copied().max().unwrap_or(0).max(1);
    tail.iter()
        .map(|&v| {
            if v == 0 {
                ' '
            } else {
                BARS[((v * 7) / max) as usize]
            }
        })
        .collect()
}

fn ms(x: Option<f64>) -> String {
    x.map_or("-".into(), |v| {
        if v < 10.0 {
            format!("{v:.2}")
        } else {
            format!("{v:.0}")
        }
    })
}

pub fn draw(f: &mut Frame, m: &Model, view: View, sort: Sort) {
    let [head, body, keys] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(3),
        Constraint::Length(1),
    ])
    .areas(f.area());
    let mut title = format!(
        "tandem top - node {}  up {}s  flows {}",
        m.node, m.uptime_s, m.flows
    );
    if let Some(e) = &m.error {
        title = format!("{title}  [stale: {e}]");
    }
    f.render_widget(
        Paragraph::new(title).style(Style::default().add_modifier(Modifier::REVERSED)),
        head,
    );
    match view {
        View::Backends => backends(f, m, sort, body),
        View::Ports => ports(f, m, body),
        View::Nodes => nodes(f, m, body),
    }
    f.render_widget(
        Paragraph::new(format!(
            "1 backends  2 ports  3 nodes  s sort ({})  q quit",
            sort.name()
        )),
        keys,
    );
}

fn bold_header(cells: Vec<&str>) -> Row<'_> {
    Row::new(cells).style(Style::default().add_modifier(Modifier::BOLD))
}

fn backends(f: &mut Frame, m: &Model, sort: Sort, area: Rect) {
    let rows_for_services = (m.services.len() as u16 + 3).min(area.height / 3).max(3);
    let [svc, be] =
        Layout::vertical([Constraint::Length(rows_for_services), Constraint::Min(3)]).areas(area);
    services_table(f, m, svc);
    backends_table(f, m, sort, be);
}

fn services_table(f: &mut Frame, m: &Model, area: Rect) {
    let rows: Vec<Row> = m
        .services
        .iter()
        .map(|s| {
            Row::new(vec![
                s.name.clone(),
                s.vip.clone(),
                s.mode.clone(),
                s.backends.clone(),
                s.queue_len.to_string(),
                s.queue_full.to_string(),
                s.queue_timed_out.to_string(),
            ])
        })
        .collect();
    f.render_widget(
        Table::new(
            rows,
            [
                Constraint::Length(12),
                Constraint::Length(22),
                Constraint::Length(5),
                Constraint::Length(8),
                Constraint::Length(7),
                Constraint::Length(6),
                Constraint::Length(8),
            ],
        )
        .header(bold_header(vec![
            "service", "vip", "mode", "elig/act", "queued", "full", "timedout",
        ]))
        .block(Block::default().borders(Borders::TOP).title("services")),
        area,
    );
}

fn backends_table(f: &mut Frame, m: &Model, sort: Sort, be: Rect) {
    // The two sparklines (p50, then p99) share what the fixed columns leave.
    let spark = ((be.width as usize).saturating_sub(71) / 2).clamp(4, HISTORY);
    let rows: Vec<Row> = m
        .sorted_backends(sort)
        .into_iter()
        .map(|b| {
            let key = format!("{}/{}", b.service, b.backend);
            let line = |h: Option<&std::collections::VecDeque<u64>>| {
                h.map_or(String::new(), |h| sparkline(h.iter().copied(), spark))
            };
            let sparks = format!(
                "{:<spark$}|{}",
                line(m.p50_history.get(&key)),
                line(m.p99_history.get(&key))
            );
            Row::new(vec![
                key.clone(),
                if b.health == "up" {
                    b.state.clone()
                } else {
                    "down".into()
                },
                format!("{:.2}", b.qos_factor),
                format!("{:.0}", b.new_per_s),
                b.active.to_string(),
                b.limit.clone(),
                ms(b.p50_ms),
                ms(b.p99_ms),
                sparks,
            ])
        })
        .collect();
    f.render_widget(
        Table::new(
            rows,
            [
                Constraint::Length(16),
                Constraint::Length(8),
                Constraint::Length(5),
                Constraint::Length(6),
                Constraint::Length(6),
                Constraint::Length(5),
                Constraint::Length(6),
                Constraint::Length(6),
                Constraint::Min(8),
            ],
        )
        .header(bold_header(vec![
            "backend",
            "state",
            "qos",
            "new/s",
            "active",
            "limit",
            "p50ms",
            "p99ms",
            "p50|p99 1min",
        ]))
        .block(Block::default().borders(Borders::TOP).title(format!(
            "backends by {} (latency: the kind QoS compares)",
            sort.name()
        ))),
        be,
    );
}

fn ports(f: &mut Frame, m: &Model, area: Rect) {
    let [p, d] = Layout::vertical([
        Constraint::Length((m.ports.len() as u16 + 3).max(4)),
        Constraint::Min(3),
    ])
    .areas(area);
    let rows: Vec<Row> = m
        .ports
        .iter()
        .map(|p| {
            Row::new(vec![
                p.name.clone(),
                p.link.clone(),
                format!("{:.3}", p.rx_mpps),
                format!("{:.3}", p.tx_mpps),
                p.rx.to_string(),
                p.tx.to_string(),
                p.missed.to_string(),
            ])
        })
        .collect();
    f.render_widget(
        Table::new(
            rows,
            [
                Constraint::Length(10),
                Constraint::Length(5),
                Constraint::Length(8),
                Constraint::Length(8),
                Constraint::Length(14),
                Constraint::Length(14),
                Constraint::Length(10),
            ],
        )
        .header(bold_header(vec![
            "port", "link", "rx Mpps", "tx Mpps", "rx", "tx", "missed",
        ]))
        .block(Block::default().borders(Borders::TOP).title("ports")),
        p,
    );
    let rows: Vec<Row> = m
        .drops
        .iter()
        .map(|(k, n)| Row::new(vec![k.clone(), n.to_string()]))
        .collect();
    let empty = rows.is_empty();
    f.render_widget(
        Table::new(rows, [Constraint::Length(24), Constraint::Length(14)])
            .header(bold_header(vec!["drop reason", "frames"]))
            .block(Block::default().borders(Borders::TOP).title(if empty {
                "drops: none"
            } else {
                "drops by reason"
            })),
        d,
    );
}

fn nodes(f: &mut Frame, m: &Model, area: Rect) {
    if !m.clustered {
        f.render_widget(
            Paragraph::new(vec![Line::from(
                "this node is not part of a cluster (no [cluster] section)",
            )])
            .block(
                Block::default()
                    .borders(Borders::TOP)
                    .title("cluster nodes"),
            ),
            area,
        );
        return;
    }
    let rows: Vec<Row> = m
        .nodes
        .iter()
        .map(|n| {
            Row::new(vec![
                n.id.clone(),
                n.status.clone(),
                n.alive.clone(),
                n.flows.to_string(),
                n.lag.clone(),
            ])
        })
        .collect();
    f.render_widget(
        Table::new(
            rows,
            [
                Constraint::Length(6),
                Constraint::Length(14),
                Constraint::Length(6),
                Constraint::Length(10),
                Constraint::Length(10),
            ],
        )
        .header(bold_header(vec!["node", "status", "alive", "flows", "lag"]))
        .block(
            Block::default()
                .borders(Borders::TOP)
                .title("cluster nodes"),
        ),
        area,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparklines_scale_to_their_maximum_and_keep_the_last_values() {
        assert_eq!(sparkline([0u64, 1, 7, 14].into_iter(), 10), " ▁▄█");
        assert_eq!(sparkline([5u64, 5, 5].into_iter(), 2), "██");
        assert_eq!(sparkline(std::iter::empty::<u64>(), 4), "");
    }
}
