//! The terminal: entering and leaving the full-screen UI on every exit
//! path (normal, error, signal, panic), and reading a secret without
//! echoing it.

use std::{
    io::{self, BufRead as _, IsTerminal as _, Write as _},
    path::PathBuf,
    sync::atomic::{AtomicBool, Ordering},
};

use anyhow::{Result, bail};
use ratatui::crossterm::{
    cursor,
    event::{
        self, DisableBracketedPaste, EnableBracketedPaste, Event, KeyCode, KeyEventKind,
        KeyModifiers,
    },
    execute,
    terminal::{self, EnterAlternateScreen, LeaveAlternateScreen},
};
use zeroize::Zeroizing;

/// Whether the full-screen UI is up (so a panic knows to take it down).
static UI_ACTIVE: AtomicBool = AtomicBool::new(false);

/// Puts the terminal back as the shell expects it: idempotent, callable
/// from a panic hook.
pub(crate) fn restore() {
    if UI_ACTIVE.swap(false, Ordering::SeqCst) {
        let _ = terminal::disable_raw_mode();
        let _ = execute!(
            io::stdout(),
            DisableBracketedPaste,
            LeaveAlternateScreen,
            cursor::Show
        );
    }
}

/// The full-screen UI; dropping it restores the terminal.
pub(crate) struct Screen;

impl Screen {
    /// Raw mode and the alternate screen.
    pub(crate) fn enter() -> Result<Self> {
        if !io::stdout().is_terminal() {
            bail!("ferry-chat needs a terminal (stdout is not one)");
        }
        terminal::enable_raw_mode()?;
        UI_ACTIVE.store(true, Ordering::SeqCst);
        // Bracketed paste: a pasted newline is text, not Enter (a pasted
        // "/wipe⏎WIPE⏎" must not run).
        execute!(
            io::stdout(),
            EnterAlternateScreen,
            EnableBracketedPaste,
            cursor::Hide
        )?;
        Ok(Self)
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        restore();
    }
}

/// Replaces Rust's panic output: the terminal is restored, the user sees
/// one line, and the details (location only: a panic message could hold
/// a message's text) go to `crash_log`.
pub(crate) fn install_panic_hook(crash_log: PathBuf) {
    std::panic::set_hook(Box::new(move |info| {
        restore();
        let location = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&crash_log)
            .and_then(|mut f| writeln!(f, "internal error at {location}"))
            .is_ok();
        let mut err = io::stderr();
        if written {
            let _ = writeln!(
                err,
                "ferry-chat: internal error; nothing you sent was lost (details: {})",
                crash_log.display()
            );
        } else {
            let _ = writeln!(
                err,
                "ferry-chat: internal error at {location}; nothing you sent was lost"
            );
        }
        // The screen is gone: a panic on another thread (a node task)
        // must not leave the chat drawing over the shell. The store is
        // crash-safe, so exiting here loses nothing that was sent.
        std::process::exit(101);
    }));
}

/// Reads a line without echoing it. From a terminal, keys are read in raw
/// mode and nothing is printed for them; otherwise (a script) one line is
/// read from stdin.
pub(crate) fn read_secret(prompt: &str) -> Result<Zeroizing<String>> {
    let mut err = io::stderr();
    write!(err, "{prompt}")?;
    err.flush()?;
    if !io::stdin().is_terminal() {
        let mut line = Zeroizing::new(String::with_capacity(256));
        if io::stdin().lock().read_line(&mut line)? == 0 {
            bail!("no passphrase given (stdin closed)");
        }
        writeln!(err)?;
        return Ok(Zeroizing::new(
            line.trim_end_matches(['\r', '\n']).to_string(),
        ));
    }
    terminal::enable_raw_mode()?;
    let result = read_raw();
    let _ = terminal::disable_raw_mode();
    writeln!(err)?;
    result
}

fn read_raw() -> Result<Zeroizing<String>> {
    // Room for any passphrase a person types: no reallocation leaves a
    // copy behind. Longer input is refused rather than grown.
    let mut secret = Zeroizing::new(String::with_capacity(1024));
    loop {
        let Event::Key(key) = event::read()? else {
            continue;
        };
        if key.kind == KeyEventKind::Release {
            continue;
        }
        match key.code {
            KeyCode::Enter => return Ok(secret),
            KeyCode::Backspace => {
                secret.pop();
            }
            KeyCode::Char('c' | 'd') if key.modifiers.contains(KeyModifiers::CONTROL) => {
                bail!("cancelled");
            }
            KeyCode::Char('u') if key.modifiers.contains(KeyModifiers::CONTROL) => secret.clear(),
            KeyCode::Char(c) => {
                if secret.len() + c.len_utf8() > secret.capacity() {
                    bail!("passphrase too long");
                }
                secret.push(c);
            }
            KeyCode::Esc => bail!("cancelled"),
            _ => {}
        }
    }
}

/// Reads one visible line (a confirmation).
pub(crate) fn read_line(prompt: &str) -> Result<String> {
    let mut err = io::stderr();
    write!(err, "{prompt}")?;
    err.flush()?;
    let mut line = String::new();
    if io::stdin().lock().read_line(&mut line)? == 0 {
        bail!("cancelled (stdin closed)");
    }
    Ok(line.trim().to_string())
}
