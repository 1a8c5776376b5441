//! Drawing: contacts and peers on the left, the conversation on the
//! right, the input line and the status line at the bottom. Everything
//! fits 80×24.

use ferry_node::{MessageStatus, StoredMessage};
use ratatui::{
    Frame,
    layout::{Constraint, Layout, Rect},
    style::{Color, Modifier, Style},
    text::{Line, Span},
    widgets::{Block, Borders, Clear, List, ListItem, Paragraph, Wrap},
};

use crate::app::{App, MAX_SHOWN_BODY, Overlay, Tone, clean, short_peer};

/// `YYYY-MM-DD` for days since the Unix epoch (proleptic Gregorian).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = u32::try_from(doy - (153 * mp + 2) / 5 + 1).unwrap_or(1);
    let month = u32::try_from(if mp < 10 { mp + 3 } else { mp - 9 }).unwrap_or(1);
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// A time in UTC: `HH:MM` today, `YYYY-MM-DD HH:MM` otherwise.
pub(crate) fn when(unix: u64, now: u64) -> String {
    let secs = i64::try_from(unix).unwrap_or(0);
    let (day, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (h, m) = (rem / 3600, rem % 3600 / 60);
    let today = i64::try_from(now).unwrap_or(0).div_euclid(86_400);
    if day == today {
        format!("{h:02}:{m:02}")
    } else {
        let (y, mo, d) = civil(day);
        format!("{y:04}-{mo:02}-{d:02} {h:02}:{m:02}")
    }
}

fn status_word(status: MessageStatus) -> String {
    match status {
        MessageStatus::Failed(reason) => format!("failed: {reason:?}").to_lowercase(),
        other => other.name().to_string(),
    }
}

fn status_color(status: MessageStatus) -> Color {
    match status {
        MessageStatus::Delivered => Color::Green,
        MessageStatus::Expired | MessageStatus::Failed(_) => Color::Red,
        MessageStatus::Queued => Color::Yellow,
        _ => Color::Cyan,
    }
}

/// A message as lines: a header line with the time, the sender and the
/// first line of the body (cleaned of control characters), then the
/// body's other lines.
fn message_lines<'a>(m: &'a StoredMessage, name: &str, now: u64) -> Vec<Line<'a>> {
    let mut body = clean(&String::from_utf8_lossy(&m.body), true);
    // A contact must not be able to push everything else off the screen
    // (or past what a u16 of wrapped lines can count).
    if body.len() > MAX_SHOWN_BODY {
        let cut = (0..=MAX_SHOWN_BODY)
            .rev()
            .find(|i| body.is_char_boundary(*i))
            .unwrap_or(0);
        let hidden = body.len() - cut;
        body.truncate(cut);
        body.push_str(&format!(" … ({hidden} more bytes not shown)"));
    }
    let mut rest = body.split('\n');
    let first = rest.next().unwrap_or_default().to_string();
    let mut lines = vec![message_line(m, first, name, now)];
    lines.extend(rest.map(|l| Line::from(format!("      {l}"))));
    lines
}

fn message_line<'a>(m: &'a StoredMessage, body: String, name: &str, now: u64) -> Line<'a> {
    let mut spans = vec![Span::styled(
        format!("{} ", when(m.received_at.unwrap_or(m.sent_at), now)),
        Style::default().fg(Color::DarkGray),
    )];
    if m.outgoing {
        spans.push(Span::styled("you: ", Style::default().fg(Color::Blue)));
        spans.push(Span::raw(body));
        if let Some((status, at)) = m.status {
            spans.push(Span::styled(
                format!("  [{} {}]", status_word(status), when(at, now)),
                Style::default().fg(status_color(status)),
            ));
        }
    } else {
        spans.push(Span::styled(
            format!("{name}: "),
            Style::default().fg(Color::Magenta),
        ));
        spans.push(Span::raw(body));
    }
    Line::from(spans)
}

/// Draws the whole screen.
pub(crate) fn draw(frame: &mut Frame<'_>, app: &App, now: u64) {
    let area = frame.area();
    let banner = app.warning();
    let warning_rows = u16::from(banner.is_some()) * 2;
    let [title, warning, main, input, status] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(warning_rows),
        Constraint::Min(6),
        Constraint::Length(3),
        Constraint::Length(2),
    ])
    .areas(area);

    let title_text = format!(
        " ferry-chat · {} peer(s) · carrying {} · {} · /help",
        app.peers.len(),
        app.carrying,
        app.ways
    );
    frame.render_widget(
        Paragraph::new(title_text).style(Style::default().add_modifier(Modifier::REVERSED)),
        title,
    );
    if let Some(text) = &banner {
        frame.render_widget(
            Paragraph::new(text.as_str())
                .wrap(Wrap { trim: true })
                .style(
                    Style::default()
                        .fg(Color::White)
                        .bg(Color::Red)
                        .add_modifier(Modifier::BOLD),
                ),
            warning,
        );
    }

    let [left, right] =
        Layout::horizontal([Constraint::Length(26), Constraint::Min(20)]).areas(main);
    let [contacts_area, peers_area] =
        Layout::vertical([Constraint::Percentage(60), Constraint::Percentage(40)]).areas(left);
    draw_contacts(frame, app, contacts_area);
    draw_peers(frame, app, peers_area);
    draw_conversation(frame, app, right, now);

    let prompt = match app.overlay {
        Some(Overlay::ConfirmWipe) => " type WIPE and Enter (Esc cancels) ",
        _ => match app.current() {
            Some(_) => " message (Enter sends) or /command ",
            None => " /add <code> to add a contact, /help ",
        },
    };
    // Show the end of a long line.
    let width = usize::from(input.width.saturating_sub(3));
    let chars: Vec<char> = app.input.chars().collect();
    let shown: String = chars
        .iter()
        .skip(chars.len().saturating_sub(width))
        .collect();
    frame.render_widget(
        Paragraph::new(format!("{shown}▏"))
            .block(Block::default().borders(Borders::ALL).title(prompt)),
        input,
    );
    let (style, text) = match app.status.0 {
        Tone::Info => (Style::default(), app.status.1.as_str()),
        Tone::Error => (Style::default().fg(Color::Red), app.status.1.as_str()),
        Tone::Warning => (
            Style::default().fg(Color::Red).add_modifier(Modifier::BOLD),
            app.status.1.as_str(),
        ),
    };
    frame.render_widget(
        Paragraph::new(text).style(style).wrap(Wrap { trim: true }),
        status,
    );

    if let Some(overlay) = &app.overlay {
        draw_overlay(frame, overlay, area);
    }
}

fn draw_contacts(frame: &mut Frame<'_>, app: &App, area: Rect) {
    let items: Vec<ListItem<'_>> = app
        .contacts
        .iter()
        .enumerate()
        .map(|(i, c)| {
            // The trust mark has its own column before the name: a name
            // a contact chose ("Alice ✓") cannot pass for it.
            let mark = if c.keys_changed {
                '⚠'
            } else if c.info.verified {
                '✓'
            } else {
                '·'
            };
            let mut text = format!(
                "{}{mark} {}",
                if i == app.selected { ">" } else { " " },
                c.label()
            );
            if !c.unread.is_empty() {
                text.push_str(&format!(" ({})", c.unread.len()));
            }
            let mut style = Style::default();
            if i == app.selected {
                style = style.add_modifier(Modifier::BOLD);
            }
            if c.keys_changed {
                style = style.fg(Color::Red);
            }
            ListItem::new(text).style(style)
        })
        .collect();
    let list = if items.is_empty() {
        List::new(vec![ListItem::new(" (none yet: /add)")])
    } else {
        List::new(items)
    };
    frame.render_widget(
        list.block(Block::default().borders(Borders::ALL).title(" Contacts ")),
        area,
    );
}

fn draw_peers(frame: &mut Frame<'_>, app: &App, area: Rect) {
    let mut items: Vec<ListItem<'_>> = app
        .peers
        .iter()
        .map(|p| ListItem::new(format!("{} {}", short_peer(&p.peer), app.route_name(p))))
        .collect();
    for peer in app.lan.keys() {
        if !app.peers.iter().any(|p| p.peer == *peer) {
            items.push(
                ListItem::new(format!("{} lan (found)", short_peer(peer)))
                    .style(Style::default().fg(Color::DarkGray)),
            );
        }
    }
    if items.is_empty() {
        items.push(ListItem::new("(nobody reachable)"));
    }
    frame.render_widget(
        List::new(items).block(Block::default().borders(Borders::ALL).title(" Peers ")),
        area,
    );
}

fn draw_conversation(frame: &mut Frame<'_>, app: &App, area: Rect, now: u64) {
    let (title, lines) = match app.current() {
        None => (
            " No conversation ".to_string(),
            vec![
                Line::from("Nobody to talk to yet."),
                Line::from(""),
                Line::from("1. /code shows your contact code (/qr as a QR code)."),
                Line::from("2. Give it to your friend; paste theirs with /add <code>."),
                Line::from("3. /verify: compare safety numbers in person."),
                Line::from("4. Type a message and press Enter."),
            ],
        ),
        Some(c) => {
            let name = c.label();
            let trust = if c.keys_changed {
                "KEYS CHANGED"
            } else if c.info.verified {
                "verified"
            } else {
                "not verified"
            };
            let lines = if app.conversation.is_empty() {
                vec![Line::from("No messages yet.")]
            } else {
                app.conversation
                    .iter()
                    .flat_map(|m| message_lines(m, &name, now))
                    .collect()
            };
            (format!(" {name} ({trust}) "), lines)
        }
    };
    let block = Block::default().borders(Borders::ALL).title(title);
    let inner_height = area.height.saturating_sub(2);
    let paragraph = Paragraph::new(lines).wrap(Wrap { trim: false });
    let total =
        u16::try_from(paragraph.line_count(area.width.saturating_sub(2))).unwrap_or(u16::MAX);
    let bottom = total.saturating_sub(inner_height);
    let offset = bottom.saturating_sub(app.scroll);
    frame.render_widget(paragraph.block(block).scroll((offset, 0)), area);
}

fn draw_overlay(frame: &mut Frame<'_>, overlay: &Overlay, area: Rect) {
    let (title, text): (&str, Vec<Line<'_>>) = match overlay {
        Overlay::Help => (
            " Help (any key closes) ",
            [
                "Up/Down      choose a contact    PgUp/PgDn  scroll",
                "Enter        send the typed message to the chosen contact",
                "Ctrl-C       quit",
                "",
                "/code        your contact code (not secret: share it)",
                "/qr          your contact code as a QR code",
                "/add CODE    add a contact from their code",
                "/verify      compare safety numbers with the chosen contact",
                "/name NAME   rename the chosen contact (/name alone: clear)",
                "/remove      remove the chosen contact",
                "/accept /reject   answer a contact request",
                "/export FILE write everything you carry to FILE (a USB stick)",
                "/import FILE take in a bundle someone carried to you",
                "/dial ADDR   connect to a peer's multiaddr",
                "/peers       list connected peers in full",
                "/wipe        destroy all keys, contacts and messages",
                "/quit        leave (messages keep waiting for you)",
                "",
                "Times are UTC. Status: queued, sent (left this device), carried",
                "(a relay or peer holds it), delivered (their device has it).",
            ]
            .into_iter()
            .map(Line::from)
            .collect(),
        ),
        Overlay::Code(code) => {
            let mut lines = vec![
                Line::from("Your contact code (not secret: give it to your contact):"),
                Line::from("-----BEGIN CODE-----"),
            ];
            let width = usize::from(area.width.saturating_sub(4)).max(20);
            let chars: Vec<char> = code.chars().collect();
            for chunk in chars.chunks(width) {
                lines.push(Line::from(chunk.iter().collect::<String>()));
            }
            lines.push(Line::from("-----END CODE-----"));
            lines.push(Line::from("Any key closes."));
            (" Contact code ", lines)
        }
        Overlay::Qr(art) => {
            draw_qr(frame, art, area);
            return;
        }
        Overlay::Safety { name, number, .. } => {
            let mut lines = vec![
                Line::from(format!("Safety number with {name}:")),
                Line::from(""),
            ];
            // Three rows of four groups, as the number prints itself.
            lines.extend(number.lines().map(|row| {
                Line::from(Span::styled(
                    format!("    {row}"),
                    Style::default().add_modifier(Modifier::BOLD),
                ))
            }));
            lines.extend([
                Line::from(""),
                Line::from(format!(
                    "{name} sees the same number if nobody is in the middle."
                )),
                Line::from("Compare it in person or on a call you trust."),
                Line::from(""),
                Line::from("y: they match (mark verified)   n: they differ   Esc: later"),
            ]);
            (" Safety number ", lines)
        }
        Overlay::ConfirmWipe => (
            " Wipe everything ",
            vec![
                Line::from(Span::styled(
                    "This destroys your identity, contacts and messages on this device.",
                    Style::default().fg(Color::Red).add_modifier(Modifier::BOLD),
                )),
                Line::from("It cannot be undone. Type WIPE and press Enter; Esc cancels."),
            ],
        ),
        Overlay::ConfirmRemove(_, name) => (
            " Remove contact ",
            vec![
                Line::from(format!(
                    "Remove {name} and stop tracking your messages to them?"
                )),
                Line::from("y: remove   any other key: keep"),
            ],
        ),
    };
    let height = u16::try_from(text.len())
        .unwrap_or(u16::MAX)
        .saturating_add(2)
        .min(area.height);
    let width = area.width;
    let top = area.height.saturating_sub(height) / 2;
    let rect = Rect::new(area.x, area.y + top, width, height);
    frame.render_widget(Clear, rect);
    frame.render_widget(
        Paragraph::new(text).block(Block::default().borders(Borders::ALL).title(title)),
        rect,
    );
}

/// The QR code with a frame if it fits, without one if only that fits
/// (the symbol's own quiet zone is inside the art), else what size the
/// terminal needs.
fn draw_qr(frame: &mut Frame<'_>, art: &str, area: Rect) {
    let width = u16::try_from(art.lines().map(|l| l.chars().count()).max().unwrap_or(0))
        .unwrap_or(u16::MAX);
    let height = u16::try_from(art.lines().count()).unwrap_or(u16::MAX);
    let lines: Vec<Line<'_>> = art.lines().map(Line::from).collect();
    frame.render_widget(Clear, area);
    if width.saturating_add(2) <= area.width && height.saturating_add(2) <= area.height {
        let rect = Rect::new(
            area.x + (area.width - width - 2) / 2,
            area.y + (area.height - height - 2) / 2,
            width + 2,
            height + 2,
        );
        frame.render_widget(
            Paragraph::new(lines).block(
                Block::default()
                    .borders(Borders::ALL)
                    .title(" Scan me (any key closes) "),
            ),
            rect,
        );
    } else if width <= area.width && height <= area.height {
        let rect = Rect::new(area.x, area.y, width, height);
        frame.render_widget(Paragraph::new(lines), rect);
    } else {
        frame.render_widget(
            Paragraph::new(format!(
                "The QR code needs a terminal of {width}×{height} (this one is {}×{}). \
                 Make the window taller or the font smaller, or use /code. Any key closes.",
                area.width, area.height
            ))
            .wrap(Wrap { trim: true }),
            area,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_utc_and_dated_when_not_today() {
        // 2025-12-01 12:34:56 UTC
        let t = 1_764_592_496;
        assert_eq!(when(t, t), "12:34");
        assert_eq!(when(t, t + 86_400), "2025-12-01 12:34");
        assert_eq!(when(0, t), "1970-01-01 00:00");
        assert_eq!(when(951_782_400, t), "2000-02-29 00:00");
    }
}
