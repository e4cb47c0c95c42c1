//! How a layer blob (or an archive) is compressed: one type, judged from a media type or from a
//! stream's first bytes, with the reader and the writer of each.
//!
//! The writers' settings are part of every layer digest manifold produces (gzip level 6, zstd
//! level 3 without a checksum): changing them changes every built image's digests.

use std::io::{self, BufRead, BufReader, Read, Write};

use crate::oci::media_type;

/// A layer's (or a tarball's) compression.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

/// Bytes read ahead of a decompressor (and for sniffing).
const READ_BUFFER: usize = 1 << 20;

impl Compression {
    /// The compression a layer media type (OCI or Docker schema2, distributable or not) names;
    /// None for a media type that is no layer manifold reads.
    pub fn from_media_type(mt: &str) -> Option<Compression> {
        match mt {
            media_type::OCI_LAYER | "application/vnd.oci.image.layer.nondistributable.v1.tar" => {
                Some(Compression::None)
            }
            media_type::OCI_LAYER_GZIP
            | media_type::OCI_LAYER_NONDIST_GZIP
            | media_type::DOCKER_LAYER_GZIP
            | media_type::DOCKER_LAYER_FOREIGN_GZIP => Some(Compression::Gzip),
            media_type::OCI_LAYER_ZSTD
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd" => {
                Some(Compression::Zstd)
            }
            _ => None,
        }
    }

    /// The compression of a stream, judged by its first bytes (gzip's and zstd's magic numbers;
    /// anything else is taken as uncompressed).
    pub fn sniff(head: &[u8]) -> Compression {
        if head.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }

    /// The OCI media type of a layer compressed so.
    pub fn media_type(self) -> &'static str {
        match self {
            Compression::None => media_type::OCI_LAYER,
            Compression::Gzip => media_type::OCI_LAYER_GZIP,
            Compression::Zstd => media_type::OCI_LAYER_ZSTD,
        }
    }

    /// The names `build --compression` takes (`gzip`, `zstd`): built layers are compressed.
    pub fn parse(s: &str) -> Option<Compression> {
        match s {
            "gzip" => Some(Compression::Gzip),
            "zstd" => Some(Compression::Zstd),
            _ => None,
        }
    }

    /// A reader of the decompressed stream.
    pub fn reader<'a>(self, compressed: impl Read + 'a) -> io::Result<Box<dyn Read + 'a>> {
        self.decoder(BufReader::with_capacity(READ_BUFFER, compressed))
    }

    fn decoder<'a>(self, compressed: impl BufRead + 'a) -> io::Result<Box<dyn Read + 'a>> {
        Ok(match self {
            Compression::None => Box::new(compressed),
            // Multi-member: `cat a.gz b.gz` is one valid gzip stream, as Go reads it.
            Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(compressed)),
            Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(compressed)?),
        })
    }

    /// A writer compressing into `out`; [`Encoder::finish`] ends the stream.
    pub fn writer<W: Write>(self, out: W) -> io::Result<Encoder<W>> {
        Ok(match self {
            Compression::None => Encoder::None(out),
            Compression::Gzip => Encoder::Gzip(flate2::write::GzEncoder::new(
                out,
                flate2::Compression::new(6),
            )),
            Compression::Zstd => {
                let mut z = zstd::stream::write::Encoder::new(out, 3)?;
                z.include_checksum(false)?;
                Encoder::Zstd(z)
            }
        })
    }
}

/// The decompressed stream of `input`, by its first bytes, and what it was compressed with; None
/// for an empty input.
#[allow(clippy::type_complexity)]
pub fn sniffed<'a>(input: impl Read + 'a) -> io::Result<Option<(Box<dyn Read + 'a>, Compression)>> {
    let mut input = BufReader::with_capacity(READ_BUFFER, input);
    let head = input.fill_buf()?;
    if head.is_empty() {
        return Ok(None);
    }
    let compression = Compression::sniff(head);
    Ok(Some((compression.decoder(input)?, compression)))
}

/// A compressing writer (see [`Compression::writer`]).
pub enum Encoder<W: Write> {
    None(W),
    Gzip(flate2::write::GzEncoder<W>),
    Zstd(zstd::stream::write::Encoder<'static, W>),
}

impl<W: Write> Encoder<W> {
    /// Ends the compressed stream; returns the writer it went to.
    pub fn finish(self) -> io::Result<W> {
        match self {
            Encoder::None(w) => Ok(w),
            Encoder::Gzip(gz) => gz.finish(),
            Encoder::Zstd(z) => z.finish(),
        }
    }
}

impl<W: Write> Write for Encoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Encoder::None(w) => w.write(buf),
            Encoder::Gzip(gz) => gz.write(buf),
            Encoder::Zstd(z) => z.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Encoder::None(w) => w.flush(),
            Encoder::Gzip(gz) => gz.flush(),
            Encoder::Zstd(z) => z.flush(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_types_and_magic_numbers_agree() {
        for c in [Compression::None, Compression::Gzip, Compression::Zstd] {
            assert_eq!(Compression::from_media_type(c.media_type()), Some(c));
            let mut w = c.writer(Vec::new()).unwrap();
            w.write_all(b"layer bytes").unwrap();
            let bytes = w.finish().unwrap();
            assert_eq!(Compression::sniff(&bytes), c, "{c:?}");
            let (mut r, found) = sniffed(&bytes[..]).unwrap().unwrap();
            assert_eq!(found, c);
            let mut back = Vec::new();
            r.read_to_end(&mut back).unwrap();
            assert_eq!(back, b"layer bytes");
            let mut back = Vec::new();
            c.reader(&bytes[..])
                .unwrap()
                .read_to_end(&mut back)
                .unwrap();
            assert_eq!(back, b"layer bytes");
        }
        // Docker's media types and the non-distributable ones.
        let table = [
            (media_type::DOCKER_LAYER_GZIP, Some(Compression::Gzip)),
            (
                media_type::DOCKER_LAYER_FOREIGN_GZIP,
                Some(Compression::Gzip),
            ),
            (media_type::OCI_LAYER_NONDIST_GZIP, Some(Compression::Gzip)),
            (
                "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
                Some(Compression::Zstd),
            ),
            (media_type::OCI_CONFIG, None),
        ];
        for (mt, want) in table {
            assert_eq!(Compression::from_media_type(mt), want, "{mt}");
        }
        assert!(sniffed(&b""[..]).unwrap().is_none());
        assert_eq!(Compression::parse("zstd"), Some(Compression::Zstd));
        assert_eq!(Compression::parse("none"), None);
    }

    /// The writers' output is pinned: these bytes are part of every built layer's digest (the
    /// former builder, `RUN` and `commit` writers all used gzip 6 and zstd 3 without checksum).
    #[test]
    fn writer_settings_are_stable() {
        let digest = |c: Compression| {
            let mut w = c.writer(Vec::new()).unwrap();
            w.write_all(&[7u8; 10_000]).unwrap();
            crate::oci::Digest::sha256_of(&w.finish().unwrap()).to_string()
        };
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&[7u8; 10_000]).unwrap();
        let gz = crate::oci::Digest::sha256_of(&gz.finish().unwrap()).to_string();
        assert_eq!(digest(Compression::Gzip), gz);
        let z = zstd::stream::encode_all(&[7u8; 10_000][..], 3).unwrap();
        assert_eq!(
            digest(Compression::Zstd),
            crate::oci::Digest::sha256_of(&z).to_string()
        );
    }
}
