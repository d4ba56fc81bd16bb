//! Matrix elements (`X`, layers, `raw/X`): CSR read a slice of rows at a time (in place
//! from a memory map when the layout allows), CSC and dense read whole.

use super::*;

/// Smallest and largest value (a reduction the compiler vectorizes).
fn min_max<T: Copy + Ord>(v: &[T], lo: T, hi: T) -> (T, T) {
    v.iter().fold((hi, lo), |(a, b), &x| (a.min(x), b.max(x)))
}

/// Positions `range` of a 1-D dataset.
pub(super) fn read_range<T: hdf5::H5Type>(
    ds: &Dataset,
    range: std::ops::Range<usize>,
) -> Result<Vec<T>> {
    Ok(ds.read_slice_1d::<T, _>(range)?.into_raw_vec_and_offset().0)
}

fn read_index_array(
    ds: &Dataset,
    elem: &str,
    bound: u64,
    range: std::ops::Range<usize>,
) -> Result<Vec<u32>> {
    let td = ds.dtype()?.to_descriptor()?;
    let (lo, hi, out): (i64, i64, Vec<u32>) = match td {
        TypeDescriptor::Integer(IntSize::U4) => {
            let v = read_range::<i32>(ds, range)?;
            let (lo, hi) = min_max(&v, i32::MIN, i32::MAX);
            // Same-size map: collected in place, no second buffer.
            (
                lo as i64,
                hi as i64,
                v.into_iter().map(|x| x as u32).collect(),
            )
        }
        TypeDescriptor::Unsigned(IntSize::U4) => {
            let v = read_range::<u32>(ds, range)?;
            let (_, hi) = min_max(&v, 0, u32::MAX);
            (0, hi as i64, v)
        }
        TypeDescriptor::Integer(_) | TypeDescriptor::Unsigned(_) => {
            let v = read_range::<i64>(ds, range)?;
            let (lo, hi) = min_max(&v, i64::MIN, i64::MAX);
            (lo, hi, v.into_iter().map(|x| x as u32).collect())
        }
        other => {
            return Err(elem_err(
                elem,
                format!("expected integer positions, found {other}"),
            ))
        }
    };
    if !out.is_empty() && (lo < 0 || hi as u64 >= bound) {
        let b = if lo < 0 { lo } else { hi };
        return Err(elem_err(
            elem,
            format!("position {b} is outside 0..{bound}"),
        ));
    }
    Ok(out)
}

fn read_indptr(ds: &Dataset, elem: &str, n: usize, nnz: usize) -> Result<Vec<u64>> {
    let v = ds.read_raw::<i64>().map_err(|e| elem_err(elem, e))?;
    if v.len() != n + 1 {
        return Err(elem_err(
            elem,
            format!("{} offsets (expected {} for {n} rows)", v.len(), n + 1),
        ));
    }
    if v[0] != 0 || *v.last().unwrap() as usize != nnz || v.windows(2).any(|w| w[0] > w[1]) {
        return Err(elem_err(
            elem,
            format!("offsets must rise from 0 to the {nnz} stored values"),
        ));
    }
    Ok(v.into_iter().map(|x| x as u64).collect())
}

/// A CSR matrix of an `.h5ad` (cells x genes), read a slice of rows at a time.
pub struct H5Csr {
    elem: String,
    data: Dataset,
    indices: Dataset,
    /// Row offsets, checked (rising from 0 to the number of stored values).
    pub indptr: Vec<u64>,
    /// Number of columns (genes).
    pub n_cols: usize,
    counts: bool,
    /// The file and where `data` and `indices` lie in it, with their item sizes, when both
    /// are stored contiguously (for [`H5Csr::forget`]).
    cache: Option<(std::fs::File, [(u64, u64); 2])>,
    /// `data` and `indices` in a memory map of the file, when they can be used in place.
    map: Option<MappedLists>,
}

/// The `data` (float32) and `indices` (32-bit) datasets of a CSR matrix, memory-mapped:
/// both stored contiguously, little-endian, 4-byte aligned, so that batches of rows are
/// slices of the file's pages (no read into a buffer, no conversion).
struct MappedLists {
    map: Arc<memmap2::Mmap>,
    /// The whole map as an Arrow buffer (slices of it share the map).
    bytes: arrow_buffer::Buffer,
    data: usize,
    indices: usize,
}

impl MappedLists {
    /// Map `file` if `data` and `indices` (`nnz` items each, at the byte `offsets`) qualify,
    /// checking the first items against what HDF5 reads.
    fn open(
        file: &std::fs::File,
        data: &Dataset,
        indices: &Dataset,
        offsets: [u64; 2],
        nnz: usize,
    ) -> Option<MappedLists> {
        use hdf5::datatype::ByteOrder;
        use hdf5::types::FloatSize;
        let little = |d: &Dataset| {
            d.dtype()
                .is_ok_and(|t| t.byte_order() == ByteOrder::LittleEndian)
        };
        let float32 = matches!(
            data.dtype().ok()?.to_descriptor().ok()?,
            TypeDescriptor::Float(FloatSize::U4)
        );
        let int32 = matches!(
            indices.dtype().ok()?.to_descriptor().ok()?,
            TypeDescriptor::Integer(IntSize::U4) | TypeDescriptor::Unsigned(IntSize::U4)
        );
        if !(cfg!(target_endian = "little") && float32 && int32 && little(data) && little(indices))
            || nnz == 0
        {
            return None;
        }
        let [d, i] = offsets.map(|o| o as usize);
        let (map, bytes) = crate::io::table::map_file(file).ok()?;
        let fits = |o: usize| o % 4 == 0 && o.checked_add(nnz * 4).is_some_and(|e| e <= map.len());
        if !(fits(d) && fits(i)) {
            return None;
        }
        let m = MappedLists {
            map,
            bytes,
            data: d,
            indices: i,
        };
        // where HDF5 says the datasets lie must hold what HDF5 reads there
        let k = nnz.min(64);
        let same_data = read_range::<f32>(data, 0..k).is_ok_and(|v| {
            v.iter()
                .map(|x| x.to_bits())
                .eq(m.values(0, k).iter().map(|x| x.to_bits()))
        });
        let same_indices =
            read_range::<u32>(indices, 0..k).is_ok_and(|v| v[..] == m.indices(0, k)[..]);
        (same_data && same_indices).then_some(m)
    }

    fn slice<T: arrow_buffer::ArrowNativeType>(
        &self,
        at: usize,
        a: usize,
        b: usize,
    ) -> ScalarBuffer<T> {
        ScalarBuffer::new(
            self.bytes.slice_with_length(at + a * 4, (b - a) * 4),
            0,
            b - a,
        )
    }
    fn values(&self, a: usize, b: usize) -> ScalarBuffer<f32> {
        self.slice(self.data, a, b)
    }
    fn indices(&self, a: usize, b: usize) -> ScalarBuffer<u32> {
        self.slice(self.indices, a, b)
    }
}

impl H5Csr {
    /// Open the sparse group `g` at `elem` (`major` rows of `minor` positions).
    fn open(
        path: &Path,
        g: &Group,
        elem: &str,
        major: usize,
        minor: usize,
        counts: bool,
    ) -> Result<H5Csr> {
        let ds = |n: &str| member(g, elem, n);
        let (data, indices) = (ds("data")?, ds("indices")?);
        if indices.size() != data.size() {
            return Err(elem_err(
                elem,
                format!("{} positions but {} values", indices.size(), data.size()),
            ));
        }
        let indptr = read_indptr(
            &ds("indptr")?,
            &format!("{elem}/indptr"),
            major,
            data.size(),
        )?;
        let place = |d: &Dataset| Some((d.offset()?, d.dtype().ok()?.size() as u64));
        let cache = match (place(&data), place(&indices), std::fs::File::open(path)) {
            (Some(a), Some(b), Ok(f)) => Some((f, [a, b])),
            _ => None,
        };
        let nnz = *indptr.last().unwrap_or(&0) as usize;
        let map = cache
            .as_ref()
            .and_then(|(f, [a, b])| MappedLists::open(f, &data, &indices, [a.0, b.0], nnz));
        Ok(H5Csr {
            elem: elem.to_string(),
            data,
            indices,
            indptr,
            n_cols: minor,
            counts,
            cache,
            map,
        })
    }

    /// Number of rows (cells).
    pub fn n_rows(&self) -> usize {
        self.indptr.len() - 1
    }
    /// Number of stored values.
    pub fn nnz(&self) -> usize {
        *self.indptr.last().unwrap() as usize
    }
    /// Whether [`lists`](Self::lists) can hand out slices of the mapped file (contiguous
    /// little-endian float32 values and 32-bit positions).
    pub fn in_place(&self) -> bool {
        self.map.is_some()
    }

    /// Drop the cached pages of rows `start..end` from the page cache, once read for the
    /// last time (see [`crate::io::atomic::drop_cached`]).
    pub fn forget(&self, start: usize, end: usize) {
        if let Some((file, places)) = &self.cache {
            let (a, b) = (self.indptr[start], self.indptr[end]);
            if let Some(m) = &self.map {
                for at in [m.data, m.indices] {
                    // SAFETY: the map is read-only and shared with the file: MADV_DONTNEED
                    // only drops this process's mappings of the pages (read back if used).
                    unsafe {
                        let _ = m.map.unchecked_advise_range(
                            memmap2::UncheckedAdvice::DontNeed,
                            at + a as usize * 4,
                            (b - a) as usize * 4,
                        );
                    }
                }
            }
            for (offset, size) in places {
                crate::io::atomic::drop_cached(file, offset + a * size, (b - a) * size);
            }
        }
    }

    /// Rows `start..end` as [`read`](Self::read) gives them, as slices of the mapped file
    /// when it can be used in place and the rows already keep the contract (positions
    /// strictly ascending and in range, values finite and, for counts, non-negative);
    /// otherwise read, sorted and checked by [`read`](Self::read), which names what is wrong.
    pub fn lists(&self, start: usize, end: usize) -> Result<ListRows> {
        if let Some(m) = &self.map {
            let (a, b) = (self.indptr[start] as usize, self.indptr[end] as usize);
            let offsets: Vec<i32> = self.indptr[start..=end]
                .iter()
                .map(|&o| (o as usize - a) as i32)
                .collect();
            let (indices, values) = (m.indices(a, b), m.values(a, b));
            let keeps_contract = offsets.windows(2).all(|w| {
                let k = w[0] as usize..w[1] as usize;
                crate::io::stream::row_ok(&indices[k.clone()], &values[k], self.n_cols, self.counts)
            });
            if keeps_contract {
                return Ok(ListRows {
                    offsets: OffsetBuffer::new(offsets.into()),
                    indices,
                    values,
                });
            }
        }
        self.read(start, end).map(ListRows::from)
    }

    /// Rows `start..end`, checked (positions in range, values finite and, for counts,
    /// non-negative) and with each row's positions sorted (repeats added up).
    pub fn read(&self, start: usize, end: usize) -> Result<Csr> {
        let (a, b) = (self.indptr[start] as usize, self.indptr[end] as usize);
        let data_elem = format!("{}/data", self.elem);
        let data: Vec<f32> = read_range(&self.data, a..b).map_err(|e| elem_err(&data_elem, e))?;
        if self.counts {
            check_counts_at(&data, &data_elem, a)?;
        } else if let Some(v) = data.iter().find(|v| !v.is_finite()) {
            return Err(
                Error::new(format!("non-finite value {v} in the expression values"))
                    .field("values"),
            );
        }
        let indices = read_index_array(
            &self.indices,
            &format!("{}/indices", self.elem),
            self.n_cols as u64,
            a..b,
        )?;
        let mut m = Csr {
            n_cols: self.n_cols,
            indptr: self.indptr[start..=end]
                .iter()
                .map(|&o| o - a as u64)
                .collect(),
            indices,
            data,
        };
        crate::io::formats::mtx::sort_rows(&mut m);
        Ok(m)
    }
}

/// A matrix element: read whole (CSC, dense), or CSR rows to read a slice at a time.
pub enum Matrix {
    /// Read whole into memory (CSC transposed, dense made sparse).
    Whole(Csr),
    /// CSR left on disk, read by rows.
    Rows(H5Csr),
}

/// Read the matrix element at `elem` (CSR, CSC or dense) as cells x genes CSR.
pub fn read_matrix(
    file: &File,
    elem: &str,
    n_obs: usize,
    n_vars: usize,
    counts: bool,
) -> Result<Csr> {
    match open_matrix(file, elem, n_obs, n_vars, counts)? {
        Matrix::Whole(m) => Ok(m),
        Matrix::Rows(r) => r.read(0, n_obs),
    }
}

/// Open the matrix element at `elem`: CSR stays on disk to be read by rows.
pub fn open_matrix(
    file: &File,
    elem: &str,
    n_obs: usize,
    n_vars: usize,
    counts: bool,
) -> Result<Matrix> {
    let shape_err = |shape: &[u64]| {
        elem_err(
            elem,
            format!("shape {shape:?} does not match obs x var ({n_obs} x {n_vars})"),
        )
    };
    match file
        .loc_type_by_name(elem)
        .map_err(|_| elem_err(elem, "missing"))?
    {
        LocationType::Group => {
            let g = file.group(elem)?;
            let enc = attr_string(&g, "encoding-type")
                .or_else(|| attr_string(&g, "h5sparse_format").map(|f| format!("{f}_matrix")))
                .unwrap_or_default();
            let shape: Vec<u64> = g
                .attr("shape")
                .or_else(|_| g.attr("h5sparse_shape"))
                .and_then(|a| a.read_raw::<u64>())
                .map_err(|_| elem_err(elem, "sparse matrix without a 'shape' attribute"))?;
            if shape != [n_obs as u64, n_vars as u64] {
                return Err(shape_err(&shape));
            }
            let csr = match enc.as_str() {
                "csr_matrix" => true,
                "csc_matrix" => false,
                other => return Err(elem_err(elem, format!("encoding '{other}' is not supported (expected csr_matrix, csc_matrix or a dense array)"))),
            };
            let (major, minor) = if csr {
                (n_obs, n_vars)
            } else {
                (n_vars, n_obs)
            };
            let path = file.filename();
            let rows = H5Csr::open(Path::new(&path), &g, elem, major, minor, counts)?;
            if csr {
                return Ok(Matrix::Rows(rows));
            }
            let m = rows.read(0, major)?;
            Ok(Matrix::Whole(crate::io::formats::dense::transpose(&m)))
        }
        LocationType::Dataset => {
            let ds = file.dataset(elem)?;
            let shape: Vec<u64> = ds.shape().iter().map(|&s| s as u64).collect();
            if shape != [n_obs as u64, n_vars as u64] {
                return Err(shape_err(&shape));
            }
            let mut m = Csr::empty(n_vars);
            let rows_per = (1usize << 24) / n_vars.max(1) + 1;
            let mut start = 0;
            while start < n_obs {
                let end = (start + rows_per).min(n_obs);
                let sel = hdf5::Hyperslab::from(vec![(start..end).into(), (..).into()]);
                let block = ds
                    .read_slice_2d::<f32, _>(hdf5::Selection::from(sel))
                    .map_err(|e| elem_err(elem, e))?;
                for row in block.outer_iter() {
                    for (c, &v) in row.iter().enumerate() {
                        if v != 0.0 {
                            m.indices.push(c as u32);
                            m.data.push(v);
                        }
                    }
                    m.indptr.push(m.indices.len() as u64);
                }
                start = end;
            }
            if counts {
                check_counts(&m.data, elem)?;
            }
            Ok(Matrix::Whole(m))
        }
        _ => Err(elem_err(elem, "not a matrix")),
    }
}

/// Where the expression matrix of `layer` lives, and the var dataframe that describes it.
pub(super) fn matrix_location(file: &File, layer: Option<&str>) -> Result<(String, &'static str)> {
    let layers = || -> String {
        let mut v: Vec<String> = file
            .group("layers")
            .and_then(|g| g.member_names())
            .unwrap_or_default();
        if file.link_exists("X") {
            v.insert(0, "X".into());
        }
        if file.link_exists("raw") {
            v.push("raw".into());
        }
        if v.is_empty() {
            "none".into()
        } else {
            v.join(", ")
        }
    };
    let (elem, var) = match layer {
        None | Some("X") => ("X".to_string(), "var"),
        Some("raw") | Some("raw/X") => ("raw/X".to_string(), "raw/var"),
        Some(l) => (format!("layers/{}", l.trim_start_matches("layers/")), "var"),
    };
    if !file.link_exists(elem.split('/').next().unwrap()) || !file.link_exists(&elem) {
        let hint = if layer.is_none() {
            " (choose one with --layer)"
        } else {
            ""
        };
        return Err(elem_err(
            &elem,
            format!("not in this file; available: {}{hint}", layers()),
        ));
    }
    Ok((elem, var))
}
