//! The app's pieces, a component each: the Tor badge, the new-share form with its drop zone,
//! the new-drop-box form, the mirror form, the policy inputs both forms share (one validation path), and a share's
//! card.

mod bridges;
mod get_panel;
mod mirror;
mod new_dropbox;
mod new_share;
mod policy;
mod share_card;
mod tor_badge;

pub use bridges::BridgePanel;
pub use get_panel::{GetCard, GetForm};
pub use mirror::{MirrorForm, MirrorProgress};
pub use new_dropbox::NewDropBox;
pub use new_share::NewShare;
pub use share_card::ShareCard;
pub use tor_badge::TorBadge;
pub use veilshare_shared::human_size;

/// `2 d 3 h`, `3 h 05 min`, `4 min 09 s`.
pub fn human_duration(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    if d > 0 {
        format!("{d} d {h} h")
    } else if h > 0 {
        format!("{h} h {m:02} min")
    } else if m > 0 {
        format!("{m} min {s:02} s")
    } else {
        format!("{s} s")
    }
}

#[cfg(test)]
mod tests {
    use super::{share_card::qr_svg, *};

    #[test]
    fn countdowns_show_the_two_largest_units() {
        assert_eq!(human_duration(9), "9 s");
        assert_eq!(human_duration(249), "4 min 09 s");
        assert_eq!(human_duration(3 * 3600 + 5 * 60 + 7), "3 h 05 min");
        assert_eq!(human_duration(2 * 86_400 + 3 * 3600), "2 d 3 h");
    }

    #[test]
    fn the_qr_code_is_an_svg_of_the_link() {
        let svg = qr_svg("http://abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyzabcd.onion/")
            .expect("svg");
        assert!(svg.contains("<svg") && svg.contains("</svg>"));
    }
}

/// Component tests in a real browser (`cargo xtask test` runs them in headless Chromium).
#[cfg(all(test, target_arch = "wasm32"))]
mod browser_tests {
    use veilshare_shared::{ContentHash, FileEntry, Policy, ShareId, ShareLinks};
    use wasm_bindgen::JsCast;
    use wasm_bindgen_test::{wasm_bindgen_test, wasm_bindgen_test_configure};

    use veilshare_shared::{ShareState, ShareView, TorStatus};
    use yew::prelude::*;

    use super::{
        get_panel::GetCardProps, mirror::MirrorFormProps, share_card::ShareCardProps,
        tor_badge::TorBadgeProps, *,
    };

    wasm_bindgen_test_configure!(run_in_browser);

    fn root() -> web_sys::Element {
        let document = web_sys::window()
            .and_then(|w| w.document())
            .expect("document");
        let root = document.create_element("div").expect("div");
        document
            .body()
            .expect("body")
            .append_child(&root)
            .expect("append");
        root
    }

    /// Lets Yew render what was scheduled.
    async fn settle() {
        gloo_timers::future::TimeoutFuture::new(10).await;
    }

    /// Renders component `C` with `props` into a new element of the page.
    async fn render<C: BaseComponent>(props: C::Properties) -> web_sys::Element {
        let root = root();
        yew::Renderer::<C>::with_root_and_props(root.clone(), props).render();
        settle().await;
        root
    }

    /// The card of `share`, rendered at time `now`.
    async fn show(share: ShareView, now: u64) -> web_sys::Element {
        let props = ShareCardProps {
            share,
            now,
            on_changed: Callback::noop(),
        };
        render::<ShareCard>(props).await
    }

    /// A card for a share in `state`, rendered at time `now`.
    async fn card(state: ShareState, now: u64) -> web_sys::Element {
        show(share(state), now).await
    }

    fn share(state: ShareState) -> ShareView {
        ShareView {
            id: ShareId::parse("abcdefghijklmnopqrstuvwxyz").expect("id"),
            label: Some("Report".into()),
            files: vec![FileEntry {
                name: "report.pdf".into(),
                size: 1536,
                hash: ContentHash::parse(&"a".repeat(64)).expect("hash"),
            }],
            total_size: 1536,
            content_hash: ContentHash::parse(&"b".repeat(64)).expect("hash"),
            policy: Policy {
                max_downloads: Some(3),
                expires_at: Some(100_000),
            },
            created_at: 1,
            downloads_completed: 1,
            downloads_in_flight: 1,
            downloads_remaining: Some(2),
            state,
            ended_at: None,
            data_deleted: false,
            direct: false,
            problem: None,
            links: ShareLinks {
                onion: Some(format!("http://{}.onion/", "a".repeat(56))),
                local: None,
                ticket: None,
            },
            client_key: Some("K".repeat(52)),
            dropbox: None,
            metadata: vec![veilshare_shared::MetadataReport {
                name: "report.pdf".into(),
                format: "PDF".into(),
                found: vec![veilshare_shared::MetadataKind::Author],
                removable: false,
                removed: false,
                note: None,
            }],
            recipients: Vec::new(),
        }
    }

    #[wasm_bindgen_test]
    async fn a_live_card_shows_counts_countdown_links_key_and_qr() {
        let root = card(ShareState::Live, 100_000 - 3 * 3600 - 5 * 60).await;
        let text = root.text_content().unwrap_or_default();
        assert!(text.contains("1 of 3 downloads, 1 in progress"), "{text}");
        assert!(text.contains("expires in 3 h 05 min"), "{text}");
        assert!(text.contains(".onion/"), "{text}");
        assert!(text.contains(&"K".repeat(52)), "{text}");
        assert!(
            text.contains("report.pdf (PDF) contains a person's or organisation's name; veilshare cannot remove it"),
            "what the files reveal is on the card: {text}"
        );
        assert!(root.query_selector(".qr svg").ok().flatten().is_some());
        assert_eq!(
            root.query_selector_all("button.copy")
                .map(|l| l.length())
                .unwrap_or(0),
            2,
            "a copy button for the link and for the key"
        );
    }

    #[wasm_bindgen_test]
    async fn a_drop_box_card_lists_what_arrived_with_links_to_save_each_file() {
        let mut dropbox = share(ShareState::Live);
        dropbox.label = None;
        dropbox.files = Vec::new();
        dropbox.dropbox = Some(veilshare_shared::DropBoxView {
            limits: veilshare_shared::DropBoxLimits {
                max_bytes: None,
                max_file: Some(1 << 20),
                max_uploads: Some(5),
                text: true,
                encrypt_to: None,
            },
            uploads: 1,
            bytes: 1536,
            items: vec![veilshare_shared::ReceivedItem {
                id: "0123456789abcdef".into(),
                received_at: 1_764_547_200,
                files: vec![FileEntry {
                    name: "tip 1.pdf".into(),
                    size: 1536,
                    hash: ContentHash::parse(&"a".repeat(64)).expect("hash"),
                }],
                message: Some("from a source".into()),
                encrypted: false,
                sent: Vec::new(),
                metadata: vec![veilshare_shared::MetadataReport {
                    name: "tip 1.pdf".into(),
                    format: "PDF".into(),
                    found: vec![veilshare_shared::MetadataKind::Author],
                    removable: false,
                    removed: false,
                    note: None,
                }],
            }],
        });
        let root = show(dropbox, 0).await;
        let text = root.text_content().unwrap_or_default();
        assert!(text.contains("Drop box"), "{text}");
        assert!(
            text.contains("1 of 5 uploads, 1.5 KiB received, files up to 1.0 MiB"),
            "{text}"
        );
        assert!(text.contains("Received 2025-12-01 00:00 UTC"), "{text}");
        assert!(text.contains("from a source"), "{text}");
        assert!(
            text.contains("tip 1.pdf contains a person's or organisation's name: it may identify whoever sent it"),
            "{text}"
        );
        assert!(!text.contains("downloads"), "{text}");
        assert!(text.contains("stored as received, not encrypted"), "{text}");
        let link = root
            .query_selector(".items a[download]")
            .ok()
            .flatten()
            .and_then(|a| a.get_attribute("href"))
            .expect("a link to save the file");
        assert_eq!(
            link,
            "/api/shares/abcdefghijklmnopqrstuvwxyz/items/0123456789abcdef/files/tip%201.pdf"
        );
        let close = root
            .query_selector("li.card > .actions button.danger")
            .ok()
            .flatten()
            .and_then(|b| b.text_content());
        assert_eq!(close.as_deref(), Some("Close…"));

        // Each upload has its own Delete, which asks before anything is deleted.
        let delete = root
            .query_selector(".item .actions button.danger")
            .ok()
            .flatten()
            .and_then(|b| b.dyn_into::<web_sys::HtmlElement>().ok())
            .expect("a Delete button on the upload");
        assert_eq!(delete.text_content().as_deref(), Some("Delete…"));
        delete.click();
        settle().await;
        let text = root.text_content().unwrap_or_default();
        assert!(text.contains("Delete this upload?"), "{text}");
        assert!(text.contains("Yes, delete"), "{text}");
        assert!(
            text.contains("tip 1.pdf"),
            "nothing is deleted before yes: {text}"
        );
    }

    /// Sets an input's text and fires its `input` event, as typing does.
    fn type_into(root: &web_sys::Element, selector: &str, text: &str) {
        let input = root
            .query_selector(selector)
            .ok()
            .flatten()
            .and_then(|e| e.dyn_into::<web_sys::HtmlInputElement>().ok())
            .expect("input");
        input.set_value(text);
        let event = web_sys::InputEvent::new("input").expect("event");
        input.dispatch_event(&event).expect("dispatch");
    }

    /// The drop box form checks what was typed by the API's rules before anything is sent,
    /// and every field typed counts (the size typed first is still there once the label was
    /// typed after it).
    #[wasm_bindgen_test]
    async fn the_drop_box_form_refuses_a_size_it_cannot_read_before_sending() {
        let props = new_dropbox::NewDropBoxProps {
            on_created: Callback::noop(),
            tor_on: true,
        };
        let root = render::<NewDropBox>(props).await;
        type_into(&root, "#box-max-file", "lots");
        type_into(&root, "#box-label", "Tips");
        settle().await;
        root.query_selector("button[type=submit]")
            .ok()
            .flatten()
            .and_then(|b| b.dyn_into::<web_sys::HtmlElement>().ok())
            .expect("submit")
            .click();
        settle().await;
        let text = root.text_content().unwrap_or_default();
        assert!(text.contains("per file: \"lots\" is not a size"), "{text}");
    }

    #[wasm_bindgen_test]
    async fn revoking_asks_for_confirmation_first() {
        let root = card(ShareState::Live, 0).await;
        let ask = root
            .query_selector("button.danger")
            .ok()
            .flatten()
            .and_then(|b| b.dyn_into::<web_sys::HtmlElement>().ok())
            .expect("revoke button");
        assert_eq!(ask.text_content().as_deref(), Some("Revoke…"));
        ask.click();
        settle().await;
        let text = root.text_content().unwrap_or_default();
        assert!(
            text.contains("Yes, revoke") && text.contains("Keep it"),
            "{text}"
        );
    }

    #[wasm_bindgen_test]
    async fn a_card_lists_each_recipient_with_their_own_link_and_revokes_after_asking() {
        use veilshare_shared::{RecipientState, RecipientView};
        let mut named = share(ShareState::Live);
        named.links.onion = None;
        named.client_key = None;
        named.recipients = vec![
            RecipientView {
                name: "alice".into(),
                link: Some(format!("http://{}.onion/", "b".repeat(56))),
                client_key: Some("A".repeat(52)),
                state: RecipientState::Live,
                revoked_at: None,
            },
            RecipientView {
                name: "bob".into(),
                link: None,
                client_key: None,
                state: RecipientState::Revoked,
                revoked_at: Some(5),
            },
        ];
        let root = show(named, 0).await;
        let text = root.text_content().unwrap_or_default();
        assert!(
            text.contains(&"b".repeat(56)) && text.contains(&"A".repeat(52)),
            "{text}"
        );
        assert!(
            text.contains("Revoked: their link and key no longer reach this share."),
            "{text}"
        );
        assert_eq!(
            root.query_selector_all("li.recipient button.copy")
                .map(|l| l.length())
                .unwrap_or(0),
            2,
            "alice's link and key can be copied; bob has none"
        );
        assert!(
            root.query_selector("form.add-recipient input")
                .ok()
                .flatten()
                .is_some()
        );
        let revoke = root
            .query_selector("button[aria-label='Revoke alice']")
            .ok()
            .flatten()
            .and_then(|b| b.dyn_into::<web_sys::HtmlElement>().ok())
            .expect("alice's revoke button");
        revoke.click();
        settle().await;
        let text = root.text_content().unwrap_or_default();
        assert!(
            text.contains(
                "Revoke alice? Their link and key stop working for good; the others keep theirs."
            ),
            "{text}"
        );
    }

    #[wasm_bindgen_test]
    async fn a_fetch_shows_its_files_progress_rate_and_time_left_then_where_it_saved() {
        use veilshare_shared::{GetState, GetView, gets::GetFile};
        let mut get = GetView {
            id: "0123456789abcdef".into(),
            sources: vec!["http://a.onion/".into(), "http://b.onion/".into()],
            state: GetState::Fetching,
            label: Some("Dossier".into()),
            files: vec![GetFile {
                name: "dossier.pdf".into(),
                size: 4 << 20,
            }],
            total: Some(4 << 20),
            done: 1 << 20,
            rate: Some(512 << 10),
            folder: "/home/ana/Downloads".into(),
            saved: Vec::new(),
            problem: None,
            created_at: 1,
        };
        let props = GetCardProps {
            get: get.clone(),
            on_changed: Callback::noop(),
            on_removed: Callback::noop(),
        };
        let root = render::<GetCard>(props).await;
        let text = root.text_content().unwrap_or_default();
        assert!(
            text.contains("1.0 MiB of 4.0 MiB · 512.0 KiB/s · 6 s left · 2 sources"),
            "{text}"
        );
        assert!(text.contains("dossier.pdf (4.0 MiB)"), "{text}");
        assert!(text.contains("Pause") && text.contains("Cancel…"), "{text}");
        assert!(root.query_selector("progress").ok().flatten().is_some());

        get.state = GetState::Done;
        get.done = 4 << 20;
        get.saved = vec!["/home/ana/Downloads/dossier (1).pdf".into()];
        let props = GetCardProps {
            get,
            on_changed: Callback::noop(),
            on_removed: Callback::noop(),
        };
        let root = render::<GetCard>(props).await;
        let text = root.text_content().unwrap_or_default();
        assert!(
            text.contains("Saved and verified:/home/ana/Downloads/dossier (1).pdf"),
            "{text}"
        );
        assert!(
            text.contains("Remove from the list") && !text.contains("Pause"),
            "{text}"
        );
        assert!(root.query_selector("progress").ok().flatten().is_none());
    }

    #[wasm_bindgen_test]
    async fn an_ended_card_says_why_and_offers_no_link() {
        let root = card(ShareState::Exhausted, 0).await;
        let text = root.text_content().unwrap_or_default();
        assert!(text.contains("download limit reached"), "{text}");
        assert!(!text.contains(".onion/"), "{text}");
        assert!(
            root.query_selector("button.danger")
                .ok()
                .flatten()
                .is_none()
        );
    }

    #[wasm_bindgen_test]
    async fn tor_progress_is_shown_in_plain_words() {
        let props = TorBadgeProps {
            tor: Some(TorStatus::Bootstrapping {
                progress: 0.42,
                message: "fetching directory".into(),
            }),
            bridges: None,
        };
        let root = render::<TorBadge>(props).await;
        let text = root.text_content().unwrap_or_default();
        assert_eq!(text, "Connecting to Tor: 42% (fetching directory)");
    }

    #[wasm_bindgen_test]
    async fn a_direct_card_offers_its_ticket_and_the_mirror_form_wants_a_source() {
        let mut direct = share(ShareState::Live);
        direct.direct = true;
        direct.links.ticket = Some("blobexampleticket".into());
        let root = show(direct, 0).await;
        let text = root.text_content().unwrap_or_default();
        assert!(text.contains("blobexampleticket"), "{text}");

        let props = MirrorFormProps {
            on_created: Callback::noop(),
            progress: None,
        };
        let root = render::<MirrorForm>(props).await;
        for id in [
            "mirror-source",
            "mirror-max",
            "mirror-expiry",
            "mirror-direct",
        ] {
            let label = root
                .query_selector(&format!("label[for={id}]"))
                .ok()
                .flatten();
            assert!(label.is_some(), "{id} has no label");
        }
        let submit = root
            .query_selector("button[type=submit]")
            .ok()
            .flatten()
            .and_then(|b| b.dyn_into::<web_sys::HtmlElement>().ok())
            .expect("submit");
        submit.click();
        settle().await;
        let text = root.text_content().unwrap_or_default();
        assert!(text.contains("paste a ticket or a link first"), "{text}");
    }
}
