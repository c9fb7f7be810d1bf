//! The drop box commands: `receive` makes a drop box in the running veilshare and reports what
//! arrives, `send` uploads into someone's drop box, and `dropbox save` exports what a box
//! received (decrypting it with an age identity when the box encrypts).

#![allow(clippy::print_stdout)] // the link, the QR code and what arrived are the output

use std::{
    collections::HashSet,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use veilshare_shared::{
    FileEntry, ReceivedItem, ShareState, ShareView, dropbox::CreateDropBox, human_size,
};

use super::{ApiClient, DataDirArg};
use crate::app::get::{SendSettings, check_names};

#[derive(Debug, Args, Clone)]
pub(super) struct ReceiveArgs {
    /// The most the box takes in all, over every upload (e.g. 2G).
    #[arg(long, value_parser = veilshare_shared::parse_size, value_name = "SIZE")]
    max_bytes: Option<u64>,
    /// The most one file may have (e.g. 500M).
    #[arg(long, value_parser = veilshare_shared::parse_size, value_name = "SIZE")]
    max_file: Option<u64>,
    /// Close the box after this many uploads.
    #[arg(long, value_name = "N")]
    max_uploads: Option<u32>,
    /// Close the box after this long (e.g. 1d, 12h).
    #[arg(long, value_parser = humantime::parse_duration)]
    expires: Option<Duration>,
    /// A label shown on the box's page (e.g. "Documents for the Tribune").
    #[arg(long)]
    label: Option<String>,
    /// Uploaders may also leave a text message.
    #[arg(long)]
    text: bool,
    /// Only uploaders who also hold a key (printed with the link) can reach the box.
    #[arg(long)]
    restricted: bool,
    /// Encrypt every upload to this age recipient (age1…, from `age-keygen`) as it arrives:
    /// no plaintext byte touches this disk. Decrypt with `age -d` or `veilshare dropbox save
    /// --identity`.
    #[arg(long, value_name = "RECIPIENT")]
    encrypt_to: Option<String>,
    /// Print the link and return, instead of reporting uploads as they arrive.
    #[arg(long)]
    no_wait: bool,
    /// Keep the box's history (`veilshare log ID`) after its data is deleted.
    #[arg(long)]
    keep_log: bool,
    #[command(flatten)]
    data: DataDirArg,
}

#[derive(Debug, Args, Clone)]
pub(super) struct SendArgs {
    /// The drop box's link.
    link: String,
    /// Files to send.
    #[arg(value_name = "FILE")]
    files: Vec<PathBuf>,
    /// A text message for the box's owner (when the box takes one).
    #[arg(long)]
    message: Option<String>,
    /// Send files with their metadata (GPS position, camera, serial number, author). Without
    /// it, photos are sent without theirs (pixels unchanged), and a PDF or Office file that
    /// holds some is refused, saying what it holds.
    #[arg(long)]
    keep_metadata: bool,
    /// The key of a restricted drop box (its owner gives it with the link).
    #[arg(long, env = "VEILSHARE_KEY", hide_env_values = true)]
    key: Option<String>,
    #[command(flatten)]
    tor: super::TorArgs,
    /// How long to keep trying to reach the drop box (e.g. 2m, 30s), and to wait for it to
    /// take more bytes (at most 60 s).
    #[arg(long, default_value = "2m", value_parser = humantime::parse_duration)]
    timeout: Duration,
    /// No progress bar.
    #[arg(short, long)]
    quiet: bool,
    #[command(flatten)]
    data: DataDirArg,
}

#[derive(Debug, Subcommand, Clone)]
pub(super) enum DropboxCommand {
    /// Save what a drop box received into a folder: one folder per upload (named by its
    /// item id), every file checked against the BLAKE3 the uploader was shown. With
    /// --identity, encrypted uploads are decrypted; without it they are saved as `.age` files.
    Save {
        /// The drop box's id (from `veilshare list`).
        id: String,
        /// Only these uploads (item ids from `veilshare list`) [default: all].
        #[arg(long = "item", value_name = "ITEM")]
        items: Vec<String>,
        /// Folder to save into.
        #[arg(short = 'o', long, default_value = ".")]
        output: PathBuf,
        /// An age identity file (from `age-keygen`) to decrypt encrypted uploads with.
        #[arg(long, value_name = "FILE")]
        identity: Option<PathBuf>,
        #[command(flatten)]
        data: DataDirArg,
    },
}

/// How long `receive` waits for the box's onion service to be published.
const PUBLISH_PATIENCE: Duration = Duration::from_secs(300);

/// `veilshare receive`: a new drop box in the running veilshare.
pub(super) async fn receive(args: ReceiveArgs) -> Result<()> {
    let request = CreateDropBox {
        label: args.label,
        max_bytes: args.max_bytes,
        max_file: args.max_file,
        max_uploads: args.max_uploads,
        expires_in_secs: args.expires.map(|d| d.as_secs().max(1)),
        text: args.text,
        restricted: args.restricted,
        encrypt_to: args.encrypt_to,
        keep_log: args.keep_log,
    }
    .checked()
    .map_err(anyhow::Error::msg)?;
    let client = ApiClient::connect(&args.data.resolve()?)?;
    let created: ShareView = client
        .call(
            client
                .http
                .post(format!("{}/api/dropboxes", client.base))
                .json(&request),
        )
        .await?;
    let id = created.id.clone();
    if created.state == ShareState::Publishing {
        eprintln!("publishing the drop box's onion service…");
    }
    let started = std::time::Instant::now();
    let view = loop {
        let view = client.share(id.as_str()).await?;
        if view.state != ShareState::Publishing {
            break view;
        }
        if started.elapsed() > PUBLISH_PATIENCE {
            bail!(
                "the drop box {id} is still being published after {} s; see `veilshare list` or the app ({})",
                PUBLISH_PATIENCE.as_secs(),
                view.problem.as_deref().unwrap_or("no error so far")
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    if view.state.is_ended() {
        bail!("the drop box {id} ended at once: {}", view.state.label());
    }
    announce(&view);
    if args.no_wait {
        return Ok(());
    }
    println!(
        "Uploads are listed below as they arrive. Ctrl-C stops listing (the box stays open; `veilshare revoke {id}` closes it, and keeps what it received)."
    );
    follow(&client, &view).await
}

fn announce(view: &ShareView) {
    let Some(link) = view.links.preferred() else {
        println!(
            "drop box {} has no link (is Tor off, with no --public-listen?)",
            view.id
        );
        return;
    };
    println!(
        "\ndrop box {}\n\nGive this link to whoever should send you files (it works in Tor Browser, even at \"Safest\", or with `veilshare send`):\n\n  {link}\n",
        view.id
    );
    if let Some(qr) = crate::app::headless::qr_text(link) {
        println!("{qr}");
    }
    if let Some(key) = &view.client_key {
        println!(
            "The sender also needs this key (Tor Browser asks for it; `veilshare send --key`):\n\n  {key}\n"
        );
    }
    if let Some(dropbox) = &view.dropbox {
        match &dropbox.limits.encrypt_to {
            Some(recipient) => println!(
                "Uploads are encrypted to {recipient} as they arrive: nothing readable is written to this disk."
            ),
            None => println!("Uploads are stored as received (not encrypted)."),
        }
    }
}

/// Prints each upload as it arrives, until the box ends or Ctrl-C.
async fn follow(client: &ApiClient, view: &ShareView) -> Result<()> {
    let mut seen: HashSet<String> = view
        .dropbox
        .iter()
        .flat_map(|dropbox| dropbox.items.iter().map(|item| item.id.clone()))
        .collect();
    let signal = crate::app::wait_for_signal();
    tokio::pin!(signal);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            () = &mut signal => return Ok(()),
            _ = tick.tick() => {}
        }
        let view = client.share(view.id.as_str()).await?;
        if let Some(dropbox) = &view.dropbox {
            for item in &dropbox.items {
                if seen.insert(item.id.clone()) {
                    println!("{}", item_line(item));
                }
            }
        }
        if view.state.is_ended() {
            let why = match view.state {
                ShareState::Exhausted => "it took as many uploads as it allows",
                ShareState::Expired => "it expired",
                _ => "it was closed",
            };
            println!(
                "The drop box is closed ({why}); what it received is kept: `veilshare dropbox save {}`.",
                view.id
            );
            return Ok(());
        }
    }
}

/// One line about an upload: its id, size and names. Names were checked on arrival (no
/// control or invisible characters).
pub(super) fn item_line(item: &ReceivedItem) -> String {
    let files = if item.encrypted {
        &item.sent
    } else {
        &item.files
    };
    let names: Vec<&str> = files.iter().map(|f| f.name.as_str()).collect();
    let size: u64 = files.iter().map(|f| f.size).sum();
    format!(
        "    item {}  {:>10}  {}{}{}",
        item.id,
        human_size(size),
        names.join(", "),
        if item.message.is_some() {
            "  (+ message)"
        } else {
            ""
        },
        if item.encrypted { "  (encrypted)" } else { "" }
    )
}

/// `veilshare send`.
pub(super) async fn send(args: SendArgs) -> Result<()> {
    let data_dir = args.data.resolve()?;
    let settings = SendSettings {
        link: args.link,
        files: args.files,
        message: args.message,
        key: args.key,
        state_dir: crate::app::get::tor_state_dir(&data_dir),
        tor: args.tor.setup(&data_dir)?,
        quiet: args.quiet,
        patience: args.timeout,
        keep_metadata: args.keep_metadata,
    };
    let sent = crate::app::get::send(&settings).await?;
    for report in &sent.metadata {
        eprintln!("{}", report.summary());
    }
    let received = sent.received;
    if received.is_empty() {
        println!("The drop box received your message.");
    } else {
        println!("The drop box received (and confirmed these BLAKE3 hashes):");
        for file in &received {
            println!(
                "  {}  {:>10}  {}",
                file.hash.as_str(),
                human_size(file.size),
                file.name
            );
        }
    }
    Ok(())
}

/// `veilshare dropbox …`.
pub(super) async fn dropbox(command: DropboxCommand) -> Result<()> {
    match command {
        DropboxCommand::Save {
            id,
            items,
            output,
            identity,
            data,
        } => save(&data.resolve()?, &id, &items, &output, identity.as_deref()).await,
    }
}

async fn save(
    data_dir: &Path,
    id: &str,
    only: &[String],
    output: &Path,
    identity: Option<&Path>,
) -> Result<()> {
    let identities = match identity {
        Some(path) => Some(
            age::IdentityFile::from_file(path.display().to_string())
                .and_then(|file| file.into_identities().map_err(std::io::Error::other))
                .with_context(|| format!("cannot read the age identity file {}", path.display()))?,
        ),
        None => None,
    };
    let mut client = ApiClient::connect(data_dir)?;
    // A big file takes as long as it takes.
    client.http = reqwest::Client::builder().no_proxy().build()?;
    let view = client.share(id).await?;
    let Some(dropbox) = view.dropbox else {
        bail!("{id} is a share, not a drop box");
    };
    for wanted in only {
        if !dropbox.items.iter().any(|item| &item.id == wanted) {
            bail!("drop box {id} has no item {wanted} (see `veilshare list`)");
        }
    }
    let items: Vec<&ReceivedItem> = dropbox
        .items
        .iter()
        .filter(|item| only.is_empty() || only.contains(&item.id))
        .collect();
    if items.is_empty() {
        println!("drop box {id} has received nothing yet");
        return Ok(());
    }
    std::fs::create_dir_all(output)
        .with_context(|| format!("cannot create {}", output.display()))?;
    for item in items {
        // Item ids are ours (hex), but the API is answered by whoever holds the port.
        check_names([item.id.as_str()], false)?;
        let folder = output.join(&item.id);
        if folder.exists() {
            bail!(
                "{} already exists; save into another folder (-o), or move it away first",
                folder.display()
            );
        }
        for names in [&item.files, &item.sent] {
            if !names.is_empty() {
                check_names(names.iter().map(|f| f.name.as_str()), true)?;
            }
        }
        std::fs::create_dir(&folder)
            .with_context(|| format!("cannot create {}", folder.display()))?;
        for (index, file) in item.files.iter().enumerate() {
            let url = client.item_file_url(id, &item.id, &file.name)?;
            let response = client
                .http
                .get(url)
                .bearer_auth(&client.token)
                .send()
                .await
                .with_context(|| format!("cannot fetch {} from veilshare", file.name))?;
            if !response.status().is_success() {
                bail!(
                    "veilshare did not give {} of item {} ({})",
                    file.name,
                    item.id,
                    response.status()
                );
            }
            let stored = download(response, &folder, file).await?;
            let written = match (&identities, item.sent.get(index)) {
                (Some(identities), Some(sent)) if item.encrypted => {
                    decrypt(stored, identities, &folder, sent).await?
                }
                _ => {
                    let path = folder.join(&file.name);
                    stored
                        .persist_noclobber(&path)
                        .with_context(|| format!("cannot write {}", path.display()))?;
                    path
                }
            };
            println!("{}", written.display());
        }
        if let Some(message) = &item.message {
            let path = output.join(format!("{}.message.txt", item.id));
            write_new(&path, message.as_bytes())?;
            println!("{}", path.display());
        }
        if item.encrypted && identities.is_none() {
            eprintln!(
                "item {} is encrypted: its files were saved as .age files; decrypt them with `age -d -i KEY`, or save again with --identity",
                item.id
            );
        }
    }
    Ok(())
}

/// Downloads a stored file into a temporary file in `folder`, checking its size and BLAKE3.
async fn download(
    mut response: reqwest::Response,
    folder: &Path,
    file: &FileEntry,
) -> Result<tempfile::NamedTempFile> {
    use std::io::Write;
    let mut out = tempfile::Builder::new()
        .prefix(".veilshare-save-")
        .tempfile_in(folder)
        .with_context(|| format!("cannot write into {}", folder.display()))?;
    let mut hasher = blake3::Hasher::new();
    let mut size = 0u64;
    while let Some(chunk) = response
        .chunk()
        .await
        .with_context(|| format!("fetching {} stopped", file.name))?
    {
        size += chunk.len() as u64;
        hasher.update(&chunk);
        out.write_all(&chunk)
            .with_context(|| format!("cannot write {}", file.name))?;
    }
    if size != file.size || hasher.finalize().to_hex().as_str() != file.hash.as_str() {
        bail!(
            "{} is not what the drop box stored (size or BLAKE3 differs); nothing was saved for it",
            file.name
        );
    }
    out.as_file()
        .sync_all()
        .with_context(|| format!("cannot write {}", file.name))?;
    Ok(out)
}

/// Decrypts a stored `.age` file into `folder/<its plaintext name>`, checking the plaintext's
/// size and BLAKE3 against what the uploader was shown.
async fn decrypt(
    sealed: tempfile::NamedTempFile,
    identities: &[Box<dyn age::Identity>],
    folder: &Path,
    sent: &FileEntry,
) -> Result<PathBuf> {
    use std::io::{Read, Write};
    let target = folder.join(&sent.name);
    let decryptor = age::Decryptor::new(std::io::BufReader::new(sealed.reopen()?))
        .with_context(|| format!("{} is not an age file", sent.name))?;
    let mut reader = decryptor
        .decrypt(identities.iter().map(|identity| identity.as_ref()))
        .with_context(|| {
            format!(
                "cannot decrypt {}: the identity does not match the box's recipient",
                sent.name
            )
        })?;
    let mut out = tempfile::Builder::new()
        .prefix(".veilshare-save-")
        .tempfile_in(folder)?;
    let mut hasher = blake3::Hasher::new();
    let mut size = 0u64;
    let mut buffer = vec![0u8; 256 << 10];
    // Age's reader is blocking; the files are on this machine, so reading them here is brief
    // per piece, and this command does nothing else meanwhile.
    tokio::task::block_in_place(|| -> Result<()> {
        loop {
            let n = reader
                .read(&mut buffer)
                .with_context(|| format!("{} did not decrypt (damaged?)", sent.name))?;
            if n == 0 {
                return Ok(());
            }
            hasher.update(&buffer[..n]);
            size += n as u64;
            out.write_all(&buffer[..n])
                .with_context(|| format!("cannot write {}", target.display()))?;
        }
    })?;
    if size != sent.size || hasher.finalize().to_hex().as_str() != sent.hash.as_str() {
        bail!(
            "{} decrypted to other bytes than the uploader sent (size or BLAKE3 differs); nothing was saved for it",
            sent.name
        );
    }
    out.as_file().sync_all()?;
    out.persist_noclobber(&target)
        .with_context(|| format!("cannot write {}", target.display()))?;
    drop(sealed);
    Ok(target)
}

/// Writes a new file, never over an existing one.
fn write_new(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .with_context(|| format!("cannot create {} (does it exist already?)", path.display()))?;
    file.write_all(bytes)
        .with_context(|| format!("cannot write {}", path.display()))
}
