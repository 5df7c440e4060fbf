//! Drawing `l4ctl monit` with ratatui, for any size from 80×24 up: the instance
//! table (state coloured, memory against its ceiling), the selected instance's CPU
//! and memory charts over [`WINDOW_SECS`], its app's log lines with the last crash
//! report, and the keys. With `l` the log lines take the whole height.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::symbols::Marker;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Axis, Block, Borders, Cell, Chart, Dataset, GraphType, Paragraph, Row, Table, TableState};

use super::model::{Monit, Pane, WINDOW_SECS};
use crate::cli::render::{bytes, duration, opt};
use crate::wire::types::{InstanceStatus, State};

const KEYS: &str = "↑↓ select  r restart  R reload  s stop/start  +/- scale  l logs  q quit";

pub fn draw(frame: &mut Frame, m: &Monit, now: f64) {
    let [body, message, keys] =
        Layout::vertical([Constraint::Min(4), Constraint::Length(1), Constraint::Length(1)]).areas(frame.area());
    match m.pane {
        Pane::Overview => {
            let table_h = (m.rows.len() as u16 + 3).clamp(4, (body.height * 2 / 5).max(4));
            let [table, charts, below] =
                Layout::vertical([Constraint::Length(table_h), Constraint::Length(8), Constraint::Min(3)]).areas(body);
            draw_table(frame, m, table);
            draw_charts(frame, m, charts, now);
            draw_logs(frame, m, below, true);
        }
        Pane::Logs => draw_logs(frame, m, body, false),
    }
    let (text, style) = match (&m.unreachable, &m.message) {
        (Some(s), _) | (None, Some((s, true))) => (s.as_str(), Style::new().fg(Color::Red)),
        (None, Some((s, false))) => (s.as_str(), Style::new().fg(Color::Green)),
        (None, None) => (m.events.back().map_or("", String::as_str), Style::new().fg(Color::DarkGray)),
    };
    frame.render_widget(Paragraph::new(Span::styled(text, style)), message);
    frame.render_widget(Paragraph::new(Span::styled(KEYS, Style::new().add_modifier(Modifier::REVERSED))), keys);
}

fn state_colour(s: State) -> Color {
    match s {
        State::Online => Color::Green,
        State::Starting | State::Stopping => Color::Yellow,
        State::Stopped => Color::DarkGray,
        _ => Color::Red,
    }
}

fn draw_table(frame: &mut Frame, m: &Monit, area: Rect) {
    let header = Row::new(["id", "name", "state", "pid", "port", "↺", "uptime", "cpu", "memory"])
        .style(Style::new().add_modifier(Modifier::BOLD));
    let rows = m.rows.iter().map(|r| {
        Row::new([
            Cell::from(r.id.to_string()),
            Cell::from(format!("{}:{}", r.app, r.instance)),
            Cell::from(Span::styled(r.state.as_str(), Style::new().fg(state_colour(r.state)))),
            Cell::from(opt(r.pid)),
            Cell::from(opt(r.port)),
            Cell::from(r.restarts.to_string()),
            Cell::from(r.uptime_ms.map_or_else(|| "-".to_owned(), duration)),
            Cell::from(r.cpu_percent.map_or_else(|| "-".to_owned(), |c| format!("{c:.1}%"))),
            memory_cell(r),
        ])
    });
    // 66 columns and 8 spaces beside the name: the table fits 80 columns.
    let widths = [
        Constraint::Length(3),
        Constraint::Min(8),
        Constraint::Length(15),
        Constraint::Length(7),
        Constraint::Length(5),
        Constraint::Length(3),
        Constraint::Length(6),
        Constraint::Length(6),
        Constraint::Length(13),
    ];
    let table = Table::new(rows, widths)
        .header(header)
        .column_spacing(1)
        .row_highlight_style(Style::new().add_modifier(Modifier::REVERSED))
        .block(Block::new().borders(Borders::ALL).title(" l4ctl monit "));
    let mut state = TableState::default().with_selected(m.selected_index());
    frame.render_stateful_widget(table, area, &mut state);
}

/// `52.0M / 1.0G`, yellow past half the ceiling and red past 90%.
fn memory_cell(r: &InstanceStatus) -> Cell<'static> {
    let Some(b) = r.memory_bytes else { return Cell::from("-") };
    match r.memory_ceiling_bytes {
        Some(c) if c > 0 => {
            let ratio = b as f64 / c as f64;
            let colour = if ratio >= 0.9 {
                Color::Red
            } else if ratio >= 0.5 {
                Color::Yellow
            } else {
                Color::Reset
            };
            Cell::from(Span::styled(format!("{} / {}", bytes(b), bytes(c)), Style::new().fg(colour)))
        }
        _ => Cell::from(bytes(b)),
    }
}

fn draw_charts(frame: &mut Frame, m: &Monit, area: Rect, now: f64) {
    let [left, right] = Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(area);
    let who = m.selected.as_ref().map(|(a, i)| format!("{a}:{i}")).unwrap_or_default();
    let cpu: Vec<(f64, f64)> = m.points().filter_map(|p| Some((p.t - now, p.cpu?))).collect();
    let mib: Vec<(f64, f64)> = m.points().filter_map(|p| Some((p.t - now, p.memory? as f64 / 1048576.0))).collect();
    let top_cpu = cpu.iter().map(|p| p.1).fold(1.0_f64, f64::max) * 1.2;
    let top_mib = mib.iter().map(|p| p.1).fold(1.0_f64, f64::max) * 1.2;
    let now_cpu = cpu.last().map(|p| format!("{:.1}%", p.1)).unwrap_or_default();
    let ceiling = m.selected_row().and_then(|r| r.memory_ceiling_bytes).map(|c| format!(" of {}", bytes(c)));
    let now_mem = m
        .points()
        .last()
        .and_then(|p| p.memory)
        .map(|b| format!("{}{}", bytes(b), ceiling.unwrap_or_default()))
        .unwrap_or_default();
    chart(frame, left, &format!(" {who} cpu {now_cpu} "), &cpu, top_cpu, Color::Cyan, "%");
    chart(frame, right, &format!(" memory {now_mem} "), &mib, top_mib, Color::Magenta, "MiB");
}

fn chart(frame: &mut Frame, area: Rect, title: &str, points: &[(f64, f64)], top: f64, colour: Color, unit: &str) {
    let data = Dataset::default().marker(Marker::Braille).graph_type(GraphType::Line).style(colour).data(points);
    let x = Axis::default().bounds([-WINDOW_SECS, 0.0]).labels(["-5m", "now"]);
    let y = Axis::default().bounds([0.0, top]).labels([Line::from("0"), Line::from(format!("{top:.0}{unit}"))]);
    let chart =
        Chart::new(vec![data]).block(Block::new().borders(Borders::ALL).title(title.to_owned())).x_axis(x).y_axis(y);
    frame.render_widget(chart, area);
}

fn draw_logs(frame: &mut Frame, m: &Monit, area: Rect, with_crash: bool) {
    let crash = m.crash.as_ref().filter(|_| with_crash).map(|(_, l)| l.as_slice()).unwrap_or(&[]);
    let crash_h = if crash.is_empty() { 0 } else { (crash.len() as u16 + 2).min(area.height / 2) };
    let [logs, crash_area] = Layout::vertical([Constraint::Min(3), Constraint::Length(crash_h)]).areas(area);
    let app = m.logs_app.as_deref().or(m.selected_app()).unwrap_or("");
    let inner = logs.height.saturating_sub(2) as usize;
    let lines: Vec<Line> =
        m.logs.iter().skip(m.logs.len().saturating_sub(inner)).map(|l| Line::raw(l.as_str())).collect();
    let block = Block::new().borders(Borders::ALL).title(format!(" {app} logs "));
    frame.render_widget(Paragraph::new(lines).block(block), logs);
    if crash_h > 0 {
        let lines: Vec<Line> = crash.iter().map(|l| Line::raw(l.as_str())).collect();
        let block = Block::new().borders(Borders::ALL).title(" last crash ").border_style(Style::new().fg(Color::Red));
        frame.render_widget(Paragraph::new(lines).block(block), crash_area);
    }
}
