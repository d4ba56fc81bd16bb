//! PNG files: writing the RGB pixels a plot was drawn into, and reading PNGs back (8-bit
//! grey, RGB or RGBA, not interlaced: what cellweave writes) so that tests and checks can
//! look at the pixels.

use crate::{bail, Error, Result};
use flate2::read::ZlibDecoder;
use flate2::write::ZlibEncoder;
use flate2::{Compression, Crc};
use std::io::{Read, Write};

const SIGNATURE: [u8; 8] = [0x89, b'P', b'N', b'G', b'\r', b'\n', 0x1a, b'\n'];

fn chunk(out: &mut impl Write, kind: &[u8; 4], data: &[u8]) -> std::io::Result<()> {
    out.write_all(&(data.len() as u32).to_be_bytes())?;
    out.write_all(kind)?;
    out.write_all(data)?;
    let mut crc = Crc::new();
    crc.update(kind);
    crc.update(data);
    out.write_all(&crc.sum().to_be_bytes())
}

/// Encode `width x height` RGB pixels (row-major, 3 bytes each) as a PNG.
pub fn write_rgb(out: &mut impl Write, width: u32, height: u32, rgb: &[u8]) -> Result<()> {
    if rgb.len() != width as usize * height as usize * 3 {
        bail!("{} bytes for a {width}x{height} RGB image", rgb.len());
    }
    let mut header = Vec::with_capacity(13);
    header.extend_from_slice(&width.to_be_bytes());
    header.extend_from_slice(&height.to_be_bytes());
    header.extend_from_slice(&[8, 2, 0, 0, 0]);
    let stride = width as usize * 3;
    let mut z = ZlibEncoder::new(Vec::new(), Compression::default());
    let mut row = vec![0u8; stride + 1];
    for y in 0..height as usize {
        // Filter "Sub": each byte minus the byte one pixel to the left (compresses flat areas).
        row[0] = 1;
        let src = &rgb[y * stride..(y + 1) * stride];
        for x in 0..stride {
            row[x + 1] = src[x].wrapping_sub(if x >= 3 { src[x - 3] } else { 0 });
        }
        z.write_all(&row)?;
    }
    let data = z.finish()?;
    out.write_all(&SIGNATURE)?;
    chunk(out, b"IHDR", &header)?;
    chunk(out, b"IDAT", &data)?;
    chunk(out, b"IEND", &[])?;
    Ok(())
}

/// A decoded image: RGB pixels, row-major.
#[derive(Debug, Clone)]
pub struct Image {
    pub width: u32,
    pub height: u32,
    pub rgb: Vec<[u8; 3]>,
}

impl Image {
    pub fn pixel(&self, x: u32, y: u32) -> [u8; 3] {
        self.rgb[(y * self.width + x) as usize]
    }
    /// Number of distinct colours.
    pub fn distinct_colours(&self) -> usize {
        let mut v: Vec<u32> = self
            .rgb
            .iter()
            .map(|p| u32::from_be_bytes([0, p[0], p[1], p[2]]))
            .collect();
        v.sort_unstable();
        v.dedup();
        v.len()
    }
    /// How many pixels are within `tol` (per channel) of `colour`.
    pub fn count_near(&self, colour: [u8; 3], tol: u8) -> usize {
        self.rgb
            .iter()
            .filter(|p| (0..3).all(|c| p[c].abs_diff(colour[c]) <= tol))
            .count()
    }
}

fn paeth(a: u8, b: u8, c: u8) -> u8 {
    let p = a as i16 + b as i16 - c as i16;
    let (pa, pb, pc) = (
        (p - a as i16).abs(),
        (p - b as i16).abs(),
        (p - c as i16).abs(),
    );
    if pa <= pb && pa <= pc {
        a
    } else if pb <= pc {
        b
    } else {
        c
    }
}

/// Decode a PNG (checks the signature and every chunk's CRC).
pub fn read(bytes: &[u8]) -> Result<Image> {
    if bytes.len() < 8 || bytes[..8] != SIGNATURE {
        bail!("not a PNG file (bad signature)");
    }
    let (mut pos, mut idat, mut ihdr) = (8usize, Vec::new(), None);
    loop {
        if pos + 12 > bytes.len() {
            bail!("truncated PNG (no IEND chunk)");
        }
        let len = u32::from_be_bytes(bytes[pos..pos + 4].try_into().unwrap()) as usize;
        let kind = &bytes[pos + 4..pos + 8];
        if pos + 12 + len > bytes.len() {
            bail!("truncated PNG chunk {}", String::from_utf8_lossy(kind));
        }
        let data = &bytes[pos + 8..pos + 8 + len];
        let mut crc = Crc::new();
        crc.update(kind);
        crc.update(data);
        if crc.sum().to_be_bytes() != bytes[pos + 8 + len..pos + 12 + len] {
            bail!("PNG chunk {} has a bad CRC", String::from_utf8_lossy(kind));
        }
        match kind {
            b"IHDR" => ihdr = Some(data.to_vec()),
            b"IDAT" => idat.extend_from_slice(data),
            b"IEND" => break,
            _ => {}
        }
        pos += 12 + len;
    }
    let h = ihdr.ok_or_else(|| Error::new("PNG without IHDR"))?;
    let width = u32::from_be_bytes(h[0..4].try_into().unwrap());
    let height = u32::from_be_bytes(h[4..8].try_into().unwrap());
    let (depth, colour, interlace) = (h[8], h[9], h[12]);
    let channels = match colour {
        0 => 1,
        2 => 3,
        6 => 4,
        _ => bail!("PNG colour type {colour} not supported (grey, RGB or RGBA only)"),
    };
    if depth != 8 || interlace != 0 {
        bail!("only 8-bit non-interlaced PNGs are supported");
    }
    let mut raw = Vec::new();
    ZlibDecoder::new(&idat[..])
        .read_to_end(&mut raw)
        .map_err(|e| Error::new(format!("PNG data: {e}")))?;
    let stride = width as usize * channels;
    if raw.len() != height as usize * (stride + 1) {
        bail!(
            "PNG data has {} bytes, expected {}",
            raw.len(),
            height as usize * (stride + 1)
        );
    }
    let mut px = vec![0u8; height as usize * stride];
    for y in 0..height as usize {
        let filter = raw[y * (stride + 1)];
        let src = &raw[y * (stride + 1) + 1..(y + 1) * (stride + 1)];
        for x in 0..stride {
            let a = if x >= channels {
                px[y * stride + x - channels]
            } else {
                0
            };
            let b = if y > 0 { px[(y - 1) * stride + x] } else { 0 };
            let c = if y > 0 && x >= channels {
                px[(y - 1) * stride + x - channels]
            } else {
                0
            };
            px[y * stride + x] = src[x].wrapping_add(match filter {
                0 => 0,
                1 => a,
                2 => b,
                3 => ((a as u16 + b as u16) / 2) as u8,
                4 => paeth(a, b, c),
                f => bail!("PNG row filter {f} unknown"),
            });
        }
    }
    let rgb = px
        .chunks_exact(channels)
        .map(|p| match channels {
            1 => [p[0]; 3],
            _ => [p[0], p[1], p[2]],
        })
        .collect();
    Ok(Image { width, height, rgb })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let (w, h) = (5u32, 3u32);
        let rgb: Vec<u8> = (0..w * h * 3).map(|i| (i * 37 % 251) as u8).collect();
        let mut buf = Vec::new();
        write_rgb(&mut buf, w, h, &rgb).unwrap();
        let img = read(&buf).unwrap();
        assert_eq!((img.width, img.height), (w, h));
        assert_eq!(img.rgb.concat(), rgb);
        buf[20] ^= 1;
        assert!(read(&buf).is_err());
    }
}
