//! Identifying metadata: reported before a share is made (`POST /api/inspect`), removed from
//! photos by default (what recipients download has no GPS position and the same pixels), kept
//! on request, and recorded in the share's view.

use veilshare_e2e::samples;
use veilshare_shared::{MetadataKind, MetadataReport};

use crate::util::*;

async fn download(server: &Server, link: &str, name: &str) -> Vec<u8> {
    let (status, body) = fetch(&server.http, &format!("{link}files/{name}"))
        .await
        .expect("download");
    assert_eq!(status, 200, "downloading {name}");
    body
}

#[tokio::test]
async fn a_photos_gps_position_is_shown_before_sharing_and_removed_from_what_is_shared() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path()).await;
    let photo = samples::jpeg();

    // Before sharing: what the UI asks as files are dropped. Nothing is stored.
    let before = server.stored_blob_files();
    let answer = server
        .api(reqwest::Method::POST, "/api/inspect?name=home.jpg")
        .body(photo.clone())
        .send()
        .await
        .expect("inspect");
    assert_eq!(answer.status(), 200);
    let answer = answer.text().await.expect("body");
    let report: Option<MetadataReport> = serde_json::from_str(&answer).expect(&answer);
    let report = report.expect("the photo has metadata");
    assert_eq!(report.name, "home.jpg");
    assert!(
        report.found.contains(&MetadataKind::GpsPosition),
        "{report:?}"
    );
    assert!(
        report.found.contains(&MetadataKind::SerialNumber),
        "{report:?}"
    );
    assert!(report.removable && !report.removed, "{report:?}");
    assert_eq!(
        server.stored_blob_files(),
        before,
        "inspecting stores nothing"
    );
    let nothing: Option<MetadataReport> = server
        .api(reqwest::Method::POST, "/api/inspect?name=notes.txt")
        .body("just text")
        .send()
        .await
        .expect("inspect")
        .json()
        .await
        .expect("report");
    assert_eq!(nothing, None);

    // Shared by default: the copy has no metadata, the same pixels, and the view says so.
    let text = b"notes\n".to_vec();
    let view = server
        .create(&[("home.jpg", &photo), ("notes.txt", &text)], &[])
        .await;
    assert_eq!(view.metadata.len(), 1, "{:?}", view.metadata);
    let report = &view.metadata[0];
    assert_eq!(report.name, "home.jpg");
    assert!(report.removed, "{report:?}");
    assert!(report.found.contains(&MetadataKind::GpsPosition));
    let link = view.links.local.clone().expect("local link");
    let shared = download(&server, &link, "home.jpg").await;
    assert_ne!(shared, photo);
    assert_eq!(
        view.files[0].hash.as_str(),
        blake3::hash(&shared).to_hex().as_str()
    );
    assert_eq!(view.files[0].size, shared.len() as u64);
    assert_eq!(
        samples::exif_fields(&shared),
        vec!["Orientation = row 0 at right and column 0 at top".to_owned()],
        "only the orientation is left"
    );
    assert_eq!(samples::pixels(&shared), samples::pixels(&photo));
    assert_eq!(download(&server, &link, "notes.txt").await, text);
    // The zip of the whole share holds the cleaned copy too (its CRC-32 is the copy's).
    let (status, zip) = fetch(&server.http, &format!("{link}download"))
        .await
        .expect("zip");
    assert_eq!(status, 200);
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(zip)).expect("zip");
    let mut inside = Vec::new();
    std::io::Read::read_to_end(
        &mut archive.by_name("home.jpg").expect("entry"),
        &mut inside,
    )
    .expect("read");
    assert_eq!(inside, shared);

    // Kept on request: the recipient gets the photo as it was.
    let kept = server
        .create(&[("home.jpg", &photo)], &[("keep_metadata", "true")])
        .await;
    assert!(!kept.metadata[0].removed, "{:?}", kept.metadata);
    let link = kept.links.local.clone().expect("local link");
    assert_eq!(download(&server, &link, "home.jpg").await, photo);

    // A photo that claims to be a JPEG but is broken is refused, with the reason.
    let mut broken = photo.clone();
    broken.truncate(300);
    let refused = server.create_raw(&[("broken.jpg", &broken)], &[]).await;
    assert_eq!(refused.status(), 400);
    let message = refused.text().await.expect("body");
    assert!(message.contains("cannot remove its metadata"), "{message}");
}

#[tokio::test]
async fn a_drop_box_tells_its_owner_what_a_received_photo_reveals_and_keeps_it_as_sent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path()).await;
    let view = crate::dropbox::create_dropbox(&server, serde_json::json!({})).await;
    let link = view.links.local.clone().expect("local link");
    let photo = samples::jpeg();
    let (status, page) = crate::dropbox::upload(
        &server,
        &link,
        &[("tip.jpg", &photo), ("note.txt", b"hi")],
        None,
    )
    .await;
    assert_eq!(status, 200, "{page}");
    let items = server.items(&view.id).await;
    let [item] = items.as_slice() else {
        panic!("one item: {items:?}");
    };
    let [report] = item.metadata.as_slice() else {
        panic!("one report, for the photo: {:?}", item.metadata);
    };
    assert_eq!(report.name, "tip.jpg");
    assert!(
        report.found.contains(&MetadataKind::GpsPosition),
        "{report:?}"
    );
    assert!(!report.removed);
    // The owner gets exactly what was sent: evidence is not altered.
    assert_eq!(
        server.item_file(&view.id, &item.id, "tip.jpg").await,
        (200, photo)
    );
}
