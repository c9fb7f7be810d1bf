//! `veilshare share FILE…`: sharing from a terminal, like onionshare-cli. Runs its own store and
//! Tor client under `<data-dir>/headless`, publishes one share, prints its link and a QR code,
//! reports downloads, and exits when the share ends; Ctrl-C revokes it first.

#![allow(clippy::print_stdout)] // the link, the QR code and the progress lines are the output

use std::{path::PathBuf, time::Duration};

use anyhow::{Context, Result};
use veilshare_shared::{CreateShareFields, Event, ShareState, ShareView};

use crate::{
    app::{DataDirLock, Node, NodeSettings},
    core::store::NewFiles,
};

/// Validated settings of `veilshare share`.
#[derive(Debug, Clone)]
pub struct HeadlessSettings {
    /// Files to share.
    pub files: Vec<PathBuf>,
    /// Policy and label.
    pub fields: CreateShareFields,
    /// The node it runs (its data directory is the headless one, and it revokes leftovers).
    pub node: NodeSettings,
}

/// The QR code of `text`, as lines of Unicode half blocks.
pub fn qr_text(text: &str) -> Option<String> {
    let code = qrcode::QrCode::new(text.as_bytes()).ok()?;
    Some(
        code.render::<qrcode::render::unicode::Dense1x2>()
            .dark_color(qrcode::render::unicode::Dense1x2::Light)
            .light_color(qrcode::render::unicode::Dense1x2::Dark)
            .build(),
    )
}

/// Runs a headless share to its end.
pub async fn share(settings: HeadlessSettings) -> Result<()> {
    let data_dir = &settings.node.data_dir;
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("cannot create {}", data_dir.display()))?;
    let _lock = DataDirLock::acquire(data_dir).context("is another `veilshare share` running?")?;
    let node = Node::start(settings.node.clone()).await?;
    let shares = node.context().shares.clone();
    let tor = node.context().tor.clone();
    let store = shares.store().clone();
    let events = shares.events().clone();

    let permit = store.import_permit().await?;
    let mut files = NewFiles::default();
    for path in &settings.files {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .with_context(|| format!("{} has no usable file name", path.display()))?
            .to_owned();
        eprintln!("importing {}", path.display());
        files.add_path(&store, &permit, path, name).await?;
    }
    let metadata = files
        .clean_metadata(&store, &permit, !settings.fields.keep_metadata)
        .await?;
    for report in &metadata {
        eprintln!("{}", report.summary());
    }
    let collection = store.store_collection(&permit, files.files()).await?;
    let (files, tags) = files.into_parts();
    let mut subscription = events.subscribe();
    let view = shares
        .create(
            "cli",
            files,
            collection,
            settings.fields.clone(),
            metadata,
            permit,
        )
        .await?;
    drop(tags);
    let id = view.id.clone();

    let mut announced = false;
    let announce = |view: &ShareView| {
        if let Some(link) = view.links.preferred() {
            println!(
                "\nShare this link (it works in Tor Browser, or with `veilshare get`):\n\n  {link}\n"
            );
            if let Some(qr) = qr_text(link) {
                println!("{qr}");
            }
        }
        if let Some(ticket) = &view.links.ticket {
            println!(
                "\nDirect ticket (`veilshare get <ticket>`; the recipient learns your IP address):\n\n  {ticket}\n"
            );
        }
        if let Some(key) = &view.client_key {
            println!(
                "The recipient also needs this key (Tor Browser asks for it; `veilshare get --key`):\n\n  {key}\n"
            );
        }
        for recipient in &view.recipients {
            if let (Some(link), Some(key)) = (&recipient.link, &recipient.client_key) {
                println!(
                    "\nFor {} only (their own link and key; Tor Browser asks for the key):\n\n  {link}\n  key: {key}\n",
                    recipient.name
                );
            }
        }
        if let Some(max) = view.policy.max_downloads {
            println!("It ends after {max} complete download(s).");
        }
        if let Some(at) = view.policy.expires_at {
            let left = at.saturating_sub(crate::core::shares::now_secs());
            println!(
                "It expires in {}.",
                humantime::format_duration(Duration::from_secs(left))
            );
        }
        println!("Press Ctrl-C to stop sharing (the link stops working and the data is deleted).");
    };
    if view.state == ShareState::Live {
        announce(&view);
        announced = true;
    } else {
        eprintln!("publishing the onion service…");
    }
    let signal = crate::app::wait_for_signal();
    tokio::pin!(signal);
    loop {
        tokio::select! {
            () = &mut signal => {
                eprintln!("stopping: revoking the share");
                shares.revoke(&id).await?;
                break;
            }
            event = subscription.recv() => {
                let Ok(event) = event else { continue };
                match event {
                    Event::Tor { status } => tracing::debug!(?status, "tor"),
                    Event::ShareUpdated { share } if share.id == id => {
                        if !announced && share.state == ShareState::Live {
                            announce(&share);
                            announced = true;
                        }
                        if let Some(problem) = share.problem.as_deref().filter(|_| !announced) {
                            eprintln!("{problem}");
                        }
                    }
                    Event::DownloadEnded { id: ended, sent, finished, downloads_completed } if ended == id => {
                        println!(
                            "transfer {}: {} sent; {} complete download(s) so far",
                            if finished { "finished" } else { "interrupted" },
                            veilshare_shared::human_size(sent),
                            downloads_completed
                        );
                    }
                    Event::ShareEnded { share } if share.id == id => {
                        println!("the share ended: {}", share.state.label());
                        break;
                    }
                    _ => {}
                }
            }
        }
    }
    // Wait for the stored copy to go before exiting.
    if tokio::time::timeout(Duration::from_secs(60), shares.wait_data_deleted(&id))
        .await
        .is_err()
    {
        eprintln!("the stored copy is not deleted yet; it is deleted at the next start");
    }
    // The last bytes of a download may still be on their way through the circuit when the
    // share counts it: exiting now would cut them off. The recipient closes its stream once it
    // has everything.
    if let Some(tor) = tor.filter(|tor| tor.open_streams() > 0) {
        eprintln!("waiting for the last download to reach the recipient…");
        if !tor.streams_closed(Duration::from_secs(60)).await {
            eprintln!("a recipient kept its connection open for a minute; stopping anyway");
        }
    }
    node.shutdown().await;
    Ok(())
}
