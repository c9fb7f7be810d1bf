//! Photos with identifying metadata, made by the tests themselves (no files checked in): a
//! JPEG, PNG and WebP encoded by the `image` crate, with an EXIF block written by
//! `kamadak-exif` (a GPS position in Paris, camera make and model, a body serial number, the
//! time taken, an orientation) inserted by `img-parts`.

use exif::{Field, In, Rational, Tag, Value};
use img_parts::{Bytes, ImageEXIF};

/// Width and height of the sample pictures.
pub const SIZE: (u32, u32) = (64, 48);

/// The picture: a gradient, so that any change of a pixel shows.
fn picture() -> image::RgbImage {
    image::RgbImage::from_fn(SIZE.0, SIZE.1, |x, y| {
        image::Rgb([(x * 4) as u8, (y * 5) as u8, ((x + y) * 2) as u8])
    })
}

fn ascii(tag: Tag, text: &str) -> Field {
    Field {
        tag,
        ifd_num: In::PRIMARY,
        value: Value::Ascii(vec![text.as_bytes().to_vec()]),
    }
}

fn degrees(d: u32, m: u32, s: u32) -> Value {
    Value::Rational(vec![
        Rational { num: d, denom: 1 },
        Rational { num: m, denom: 1 },
        Rational { num: s, denom: 1 },
    ])
}

/// An EXIF block (TIFF structure) as a phone writes it: where, what camera, which one, when.
pub fn phone_exif(orientation: u16) -> Vec<u8> {
    let fields = [
        ascii(Tag::Make, "Fairphone"),
        ascii(Tag::Model, "FP5"),
        ascii(Tag::BodySerialNumber, "SN-0042-7781"),
        ascii(Tag::DateTimeOriginal, "2026:11:30 08:15:00"),
        Field {
            tag: Tag::Orientation,
            ifd_num: In::PRIMARY,
            value: Value::Short(vec![orientation]),
        },
        ascii(Tag::GPSLatitudeRef, "N"),
        Field {
            tag: Tag::GPSLatitude,
            ifd_num: In::PRIMARY,
            value: degrees(48, 51, 24),
        },
        ascii(Tag::GPSLongitudeRef, "E"),
        Field {
            tag: Tag::GPSLongitude,
            ifd_num: In::PRIMARY,
            value: degrees(2, 21, 3),
        },
    ];
    let mut writer = exif::experimental::Writer::new();
    for field in &fields {
        writer.push_field(field);
    }
    let mut out = std::io::Cursor::new(Vec::new());
    writer.write(&mut out, false).expect("EXIF");
    out.into_inner()
}

fn encode(format: image::ImageFormat) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    image::DynamicImage::ImageRgb8(picture())
        .write_to(&mut out, format)
        .expect("encode");
    out.into_inner()
}

/// A JPEG from a phone: EXIF (orientation 6, "rotate 90°"), an XMP packet with the position
/// again, a comment, and a second image appended after the first (as MPF previews are) with
/// an EXIF block of its own.
pub fn jpeg() -> Vec<u8> {
    let mut jpeg = img_parts::jpeg::Jpeg::from_bytes(Bytes::from(encode(image::ImageFormat::Jpeg)))
        .expect("jpeg");
    jpeg.set_exif(Some(Bytes::from(phone_exif(6))));
    let xmp = b"http://ns.adobe.com/xap/1.0/\0<x:xmpmeta xmlns:x=\"adobe:ns:meta/\"><rdf:RDF><rdf:Description exif:GPSLatitude=\"48,51.4N\"/></rdf:RDF></x:xmpmeta>";
    let segments = jpeg.segments_mut();
    segments.insert(
        1,
        img_parts::jpeg::JpegSegment::new_with_contents(0xE1, Bytes::from_static(xmp)),
    );
    segments.insert(
        1,
        img_parts::jpeg::JpegSegment::new_with_contents(
            0xFE,
            Bytes::from_static(b"taken from the balcony"),
        ),
    );
    let mut bytes = jpeg.encoder().bytes().to_vec();
    let mut preview =
        img_parts::jpeg::Jpeg::from_bytes(Bytes::from(encode(image::ImageFormat::Jpeg)))
            .expect("jpeg");
    preview.set_exif(Some(Bytes::from(phone_exif(1))));
    bytes.extend_from_slice(&preview.encoder().bytes());
    bytes
}

/// A PNG with an `eXIf` chunk and an author in a text chunk.
pub fn png() -> Vec<u8> {
    let mut png =
        img_parts::png::Png::from_bytes(Bytes::from(encode(image::ImageFormat::Png))).expect("png");
    png.set_exif(Some(Bytes::from(phone_exif(1))));
    let text = img_parts::png::PngChunk::new(*b"tEXt", Bytes::from_static(b"Author\0Ana Lima"));
    let at = png.chunks().len() - 1;
    png.chunks_mut().insert(at, text);
    png.encoder().bytes().to_vec()
}

/// A lossless WebP with an EXIF chunk.
pub fn webp() -> Vec<u8> {
    let mut webp = img_parts::webp::WebP::from_bytes(Bytes::from(encode(image::ImageFormat::WebP)))
        .expect("webp");
    webp.set_exif(Some(Bytes::from(phone_exif(1))));
    webp.encoder().bytes().to_vec()
}

/// The pixels `bytes` decodes to (RGB, row by row), and its size.
pub fn pixels(bytes: &[u8]) -> (u32, u32, Vec<u8>) {
    let image = image::load_from_memory(bytes).expect("the image decodes");
    let rgb = image.to_rgb8();
    (rgb.width(), rgb.height(), rgb.into_raw())
}

/// The EXIF fields a reader independent of veilshare's cleaning finds in `bytes` (the first
/// EXIF block of the container), as `(tag, value)` text; empty when there is none.
pub fn exif_fields(bytes: &[u8]) -> Vec<String> {
    match exif::Reader::new().read_from_container(&mut std::io::Cursor::new(bytes)) {
        Ok(exif) => exif
            .fields()
            .map(|f| format!("{} = {}", f.tag, f.display_value()))
            .collect(),
        Err(_) => Vec::new(),
    }
}
