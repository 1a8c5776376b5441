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
mod wipe;

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
    /// Keys destroyed; what was left, if anything.
    Wiped(Option<String>),
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
            "config ok: name {}, data in {}, ways out: {}",
            settings
                .name
                .as_deref()
                .map_or("(none)".into(), |n| format!("{n:?}")),
            settings.data_dir.display(),
            settings.summary()
        );
        return ExitCode::SUCCESS;
    }
    let result = if args.panic_wipe {
        panic_wipe(&settings).map(Outcome::Wiped)
    } else {
        run(&args, &settings)
    };
    match result {
        Ok(Outcome::Done) => ExitCode::SUCCESS,
        Ok(Outcome::Wiped(left)) => {
            let _ = writeln!(
                std::io::stdout(),
                "ferry-chat: wiped: keys, contacts and messages in {} are destroyed",
                settings.data_dir.display()
            );
            if let Some(left) = left {
                say!("ferry-chat: {}", app::one_line(&left));
            }
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
fn panic_wipe(settings: &Settings) -> Result<Option<String>> {
    let store = settings.store_dir();
    // Only a directory that holds a chat store: a mistyped --data-dir
    // (a home directory, a USB stick) is never touched.
    if !store.is_dir() {
        bail!(
            "no ferry-chat data in {}: nothing wiped",
            settings.data_dir.display()
        );
    }
    let answer = term::read_line(&format!(
        "Destroy every key, contact and message in {}? Type WIPE to confirm: ",
        settings.data_dir.display()
    ))?;
    if answer != "WIPE" {
        bail!("not wiped (you typed something other than WIPE)");
    }
    // Works while a chat runs on the same data too: nothing on disk
    // opens from the first step on.
    Node::wipe_store(&store).map_err(|e| anyhow::anyhow!("NOT wiped: {}", app::one_line(&e)))?;
    wipe::remove_ours(&settings.data_dir)
        .context("keys destroyed, but some of the chat's files remain")
}

/// Asks for the passphrase: twice for a new identity.
fn passphrase(first_run: bool, dir: &Path) -> Result<Zeroizing<String>> {
    if !first_run {
        return term::read_secret(&format!("Passphrase for {}: ", dir.display()));
    }
    say!(
        "No identity in {} yet: creating one. Choose a passphrase (at least {MIN_PASSPHRASE} \
         characters); it encrypts everything on this device and cannot be recovered.",
        dir.display()
    );
    let one = term::read_secret("New passphrase: ")?;
    if one.chars().count() < MIN_PASSPHRASE {
        bail!("passphrase too short (at least {MIN_PASSPHRASE} characters); nothing was created");
    }
    let two = term::read_secret("Again: ")?;
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

/// Writes the card's name to `config.toml` in the data directory on the
/// first run (when there is none), so later runs keep issuing it.
fn remember_name(data_dir: &Path, name: &str) {
    let path = data_dir.join("config.toml");
    if path.exists() {
        return;
    }
    // A TOML basic string: the name has no control characters (checked),
    // so escaping backslashes and quotes is enough.
    let line = format!(
        "name = \"{}\"\n",
        name.replace('\\', "\\\\").replace('"', "\\\"")
    );
    if let Err(e) = std::fs::write(&path, line) {
        say!(
            "ferry-chat: could not save your name in {}: {e} (give --name on every run)",
            path.display()
        );
    }
}

fn run(args: &Args, settings: &Settings) -> Result<Outcome> {
    let first_run = !settings.store_dir().exists();
    let secret = passphrase(first_run, &settings.data_dir)?;
    private_dir(&settings.data_dir)?;
    if let Some(log) = &args.log {
        let file = {
            use std::os::unix::fs::OpenOptionsExt as _;
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600)
                .open(log)
        }
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
    let outcome = runtime.block_on(async {
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
        if first_run
            && args.config.is_none()
            && let Some(name) = &settings.name
        {
            remember_name(&settings.data_dir, name);
        }
        let mut app = App::new(node, settings.data_dir.clone(), settings.summary());
        let outcome = ui_loop(&mut app).await;
        if !matches!(outcome, Ok(Outcome::Wiped(_))) {
            app.node.shutdown().await;
        }
        outcome
    });
    // Bounded: a store whose files were wiped under the running node (a
    // --panic-wipe from another terminal) must not keep the process
    // alive in a storage flush after the chat has ended.
    runtime.shutdown_timeout(Duration::from_secs(5));
    outcome
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
    let (keys_tx, mut keys) = mpsc::channel::<std::io::Result<Event>>(64);
    std::thread::spawn(move || {
        loop {
            let event = event::read();
            let failed = event.is_err();
            if keys_tx.blocking_send(event).is_err() || failed {
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
                Some(Ok(Event::Key(key))) => match app.on_key(key).await {
                    Next::Continue => {}
                    Next::Quit => break Outcome::Done,
                    Next::Wiped(left) => break Outcome::Wiped(left),
                    Next::WipeFailed(error) => bail!("{error}"),
                },
                Some(Ok(Event::Paste(text))) => app.paste(&text),
                Some(Err(e)) => bail!("cannot read the terminal: {e}"),
                Some(Ok(_)) => {}
                None => bail!("the terminal's input ended"),
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
