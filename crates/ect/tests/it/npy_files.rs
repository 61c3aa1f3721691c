//! Bytes of `.npy` and `.npz` files for tests, well-formed or deliberately not: any dtype string, shape
//! (huge ones too), order flag, format version, header text and body, so a test can say exactly what
//! is wrong with a file.

use std::io::Write;

/// The header dict NumPy writes: `{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }`.
pub fn header(descr: &str, fortran: bool, shape: &[u64]) -> String {
    let dims: Vec<String> = shape.iter().map(u64::to_string).collect();
    let shape = match dims.len() {
        1 => format!("({},)", dims[0]),
        _ => format!("({})", dims.join(", ")),
    };
    let order = if fortran { "True" } else { "False" };
    format!("{{'descr': '{descr}', 'fortran_order': {order}, 'shape': {shape}, }}")
}

/// A `.npy` file: magic, `version` (1: 16-bit header length, else 32-bit), the header bytes padded with
/// spaces and a newline to a multiple of 64 as NumPy does, then `body`.
pub fn npy(header: &[u8], version: u8, body: &[u8]) -> Vec<u8> {
    let prefix = if version == 1 { 10 } else { 12 };
    let total = (prefix + header.len() + 1).div_ceil(64) * 64;
    let mut h = header.to_vec();
    h.resize(total - prefix - 1, b' ');
    h.push(b'\n');
    let mut out = b"\x93NUMPY".to_vec();
    out.extend_from_slice(&[version, 0]);
    if version == 1 {
        out.extend_from_slice(&(h.len() as u16).to_le_bytes());
    } else {
        out.extend_from_slice(&(h.len() as u32).to_le_bytes());
    }
    out.extend_from_slice(&h);
    out.extend_from_slice(body);
    out
}

/// A well-formed little-endian f64 array.
pub fn npy_f64(shape: &[u64], values: &[f64]) -> Vec<u8> {
    let body: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    npy(header("<f8", false, shape).as_bytes(), 1, &body)
}

/// An `.npz`: a zip of `name.npy` members with the given bytes, stored or deflated.
pub fn npz(members: &[(&str, Vec<u8>)], deflate: bool) -> Vec<u8> {
    let method = if deflate {
        zip::CompressionMethod::Deflated
    } else {
        zip::CompressionMethod::Stored
    };
    let opts = zip::write::SimpleFileOptions::default().compression_method(method);
    let mut z = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, bytes) in members {
        z.start_file(format!("{name}.npy"), opts).unwrap();
        z.write_all(bytes).unwrap();
    }
    z.finish().unwrap().into_inner()
}
