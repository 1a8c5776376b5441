//! `ferry-chat`: a terminal messenger on a Ferry node.
//!
//! First run creates an identity under a passphrase (asked twice, never
//! echoed); later runs unlock it. Messages are end-to-end encrypted and
//! travel store-and-forward over whatever reaches the other side: the
//! Internet, a relay, the LAN (found by mDNS), an obfs4 bridge, or a
//! bundle file on a USB stick (`/export`, `/import`).
//!
//! Every error is one line; the terminal is restored on every exit path
//! (including a panic, SIGTERM and SIGHUP).

mod app;
mod config;
mod term;
#[cfg(test)]
mod tests;
mod ui;

use std::{
    io::Write as _,
    path::Path,
    process::ExitCode,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context as _, Result, bail};
use app::{App, Next};
use clap::Parser as _;
use config::{Args, Settings};
use ferry_node::{Node, NodeError, StoreError};
use ratatui::{
    Terminal,
    crossterm::event::{self, Event},
    prelude::CrosstermBackend,
};
use tokio::{
    signal::unix::{SignalKind, signal},
    sync::mpsc,
};
use zeroize::Zeroizing;

/// Prints a line to stderr, ignoring failure: after a hang-up the
/// terminal is gone, and `eprintln!` would panic.
macro_rules! say {
    () => {{
        let _ = writeln!(std::io::stderr());
    }};
    ($($arg:tt)*) => {{
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

/// [`say!`] without the newline.
macro_rules! say_inline {
    ($($arg:tt)*) => {{
        let mut err = std::io::stderr();
        let _ = write!(err, $($arg)*);
        let _ = err.flush();
    }};
}

/// The shortest passphrase accepted for a new identity.
const MIN_PASSPHRASE: usize = 8;

/// How a run ended, for the exit code.
enum Outcome {
    Done,
    Wiped,
}

fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(args) => args,
        // --help and --version print and succeed; usage errors are clap's
        // own short message.
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let settings = match Settings::resolve(&args) {
        Ok(s) => s,
        Err(e) => {
            say!("ferry-chat: {}", app::one_line(&format!("{e:#}")));
            return ExitCode::from(2);
        }
    };
    term::install_panic_hook(settings.data_dir.join("crash.log"));
    if args.check_config {
        let _ = writeln!(
            std::io::stdout(),
            "config ok: data in {}, ways out: {}",
            settings.data_dir.display(),
            settings.summary()
        );
        return ExitCode::SUCCESS;
    }
    let result = if args.panic_wipe {
        panic_wipe(&settings).map(|()| Outcome::Wiped)
    } else {
        run(&args, &settings)
    };
    match result {
        Ok(Outcome::Done) => ExitCode::SUCCESS,
        Ok(Outcome::Wiped) => {
            let _ = writeln!(
                std::io::stdout(),
                "ferry-chat: wiped: keys, contacts and messages in {} are destroyed",
                settings.data_dir.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            term::restore();
            say!("ferry-chat: {}", app::one_line(&format!("{e:#}")));
            ExitCode::FAILURE
        }
    }
}

/// `--panic-wipe`: no passphrase needed, one confirmation.
fn panic_wipe(settings: &Settings) -> Result<()> {
    let store = settings.store_dir();
    if !settings.data_dir.exists() {
        bail!("nothing to wipe in {}", settings.data_dir.display());
    }
    let answer = term::read_line(&format!(
        "Destroy every key, contact and message in {}? Type WIPE to confirm: ",
        settings.data_dir.display()
    ))?;
    if answer != "WIPE" {
        bail!("not wiped (you typed something other than WIPE)");
    }
    if store.exists() {
        // Works while a chat runs on the same data too: nothing on disk
        // opens from the first step on.
        Node::wipe_store(&store)
            .map_err(|e| anyhow::anyhow!("NOT wiped: {}", app::one_line(&e)))?;
    }
    std::fs::remove_dir_all(&settings.data_dir)
        .with_context(|| "keys destroyed, but the rest of the data directory remains")?;
    Ok(())
}

/// Asks for the passphrase: twice for a new identity.
fn passphrase(first_run: bool, dir: &Path) -> Result<Zeroizing<String>> {
    if !first_run {
        return Ok(Zeroizing::new(term::read_secret(&format!(
            "Passphrase for {}: ",
            dir.display()
        ))?));
    }
    say!(
        "No identity in {} yet: creating one. Choose a passphrase (at least {MIN_PASSPHRASE} \
         characters); it encrypts everything on this device and cannot be recovered.",
        dir.display()
    );
    let one = Zeroizing::new(term::read_secret("New passphrase: ")?);
    if one.chars().count() < MIN_PASSPHRASE {
        bail!("passphrase too short (at least {MIN_PASSPHRASE} characters); nothing was created");
    }
    let two = Zeroizing::new(term::read_secret("Again: ")?);
    if *one != *two {
        bail!("the passphrases differ; nothing was created");
    }
    Ok(one)
}

#[cfg(unix)]
fn private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
    if dir.exists() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create {}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    Ok(())
}

fn run(args: &Args, settings: &Settings) -> Result<Outcome> {
    let first_run = !settings.store_dir().exists();
    let secret = passphrase(first_run, &settings.data_dir)?;
    private_dir(&settings.data_dir)?;
    if let Some(log) = &args.log {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("cannot open the log file {}", log.display()))?;
        tracing_subscriber::fmt()
            .with_writer(std::sync::Mutex::new(file))
            .with_ansi(false)
            .with_env_filter(tracing_subscriber::EnvFilter::new("warn"))
            .init();
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        say_inline!(
            "{}",
            if first_run {
                "Creating your identity… "
            } else {
                "Unlocking… "
            }
        );
        let _ = std::io::stderr().flush();
        let builder =
            settings.apply(Node::builder().storage(settings.store_dir(), secret.as_bytes()))?;
        drop(secret);
        let node = match Node::start(builder.build()?).await {
            Ok(node) => node,
            Err(NodeError::Store(StoreError::WrongPassphrase)) => {
                say!();
                bail!("wrong passphrase; nothing was changed");
            }
            Err(e) => {
                say!();
                if first_run {
                    // Leave no half-made identity behind.
                    let _ = Node::wipe_store(settings.store_dir());
                }
                return Err(anyhow::anyhow!("could not start: {}", app::one_line(&e)));
            }
        };
        say!("ok");
        let mut app = App::new(node, settings.data_dir.clone(), settings.summary());
        let outcome = ui_loop(&mut app).await;
        if !matches!(outcome, Ok(Outcome::Wiped)) {
            app.node.shutdown().await;
        }
        outcome
    })
}

// The chat is a driver: it reads the clock to show times.
#[allow(clippy::disallowed_methods)]
fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

async fn ui_loop(app: &mut App) -> Result<Outcome> {
    let mut events = app
        .node
        .events()
        .context("the node's events were already taken")?;
    let mut term_signal = signal(SignalKind::terminate())?;
    let mut hangup = signal(SignalKind::hangup())?;
    let mut interrupt = signal(SignalKind::interrupt())?;

    let screen = term::Screen::enter()?;
    let mut terminal = Terminal::new(CrosstermBackend::new(std::io::stdout()))?;
    terminal.clear()?;

    // Keys are read on their own thread (crossterm's reader blocks).
    let (keys_tx, mut keys) = mpsc::channel::<Event>(64);
    std::thread::spawn(move || {
        while let Ok(event) = event::read() {
            if keys_tx.blocking_send(event).is_err() {
                break;
            }
        }
    });

    app.refresh_contacts().await;
    app.refresh_conversation().await;
    app.refresh_peers().await;
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    let outcome = loop {
        terminal.draw(|frame| ui::draw(frame, app, unix_now()))?;
        tokio::select! {
            key = keys.recv() => match key {
                Some(Event::Key(key)) => match app.on_key(key).await {
                    Next::Continue => {}
                    Next::Quit => break Outcome::Done,
                    Next::Wiped => break Outcome::Wiped,
                },
                Some(Event::Paste(text)) => {
                    app.input.push_str(&app::clean(&text.replace(['\n', '\r'], " "), false));
                }
                Some(_) => {}
                None => break Outcome::Done,
            },
            event = events.next() => match event {
                Some(event) => app.on_event(event).await,
                None => bail!("the node stopped"),
            },
            _ = tick.tick() => app.refresh_peers().await,
            _ = term_signal.recv() => break Outcome::Done,
            _ = hangup.recv() => break Outcome::Done,
            _ = interrupt.recv() => break Outcome::Done,
        }
    };
    drop(terminal);
    drop(screen);
    Ok(outcome)
}
