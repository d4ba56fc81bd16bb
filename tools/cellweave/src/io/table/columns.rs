//! Columns of a frame to and from Arrow arrays.

use super::*;

/// Arrow field and array for a column.
pub fn column_to_arrow(name: &str, col: &Column) -> (Field, ArrayRef) {
    let (dt, arr): (DataType, ArrayRef) = match col {
        Column::Cat(c) => {
            let keys: Int32Array = c
                .codes
                .iter()
                .map(|&k| (k != Categorical::MISSING).then_some(k as i32))
                .collect();
            let values = StringArray::from_iter_values(c.categories.iter());
            let arr =
                DictionaryArray::<Int32Type>::try_new(keys, Arc::new(values)).expect("valid codes");
            (
                DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8)),
                Arc::new(arr),
            )
        }
        Column::Str(v) => (
            DataType::Utf8,
            Arc::new(v.iter().map(|s| s.as_deref()).collect::<StringArray>()),
        ),
        Column::F64(v) => (DataType::Float64, Arc::new(Float64Array::from(v.clone()))),
        Column::F32(v) => (DataType::Float32, Arc::new(Float32Array::from(v.clone()))),
        Column::I64(v) => (DataType::Int64, Arc::new(Int64Array::from(v.clone()))),
        Column::U32(v) => (DataType::UInt32, Arc::new(UInt32Array::from(v.clone()))),
        Column::Bool(v) => (DataType::Boolean, Arc::new(BooleanArray::from(v.clone()))),
    };
    (Field::new(name, dt, true), arr)
}

pub(super) fn slice_column(col: &Column, start: usize, len: usize) -> Column {
    let rows: Vec<usize> = (start..start + len).collect();
    col.select(&rows)
}

/// Read a column spread over record batches into one [`Column`].
pub fn column_from_arrow(name: &str, arrays: &[&ArrayRef]) -> Result<Column> {
    let dt = arrays
        .first()
        .map(|a| a.data_type().clone())
        .unwrap_or(DataType::Utf8);
    let err = |what: &str| Error::new(what.to_string()).field(name);
    Ok(match &dt {
        DataType::Dictionary(_, _) => {
            let mut index: HashMap<String, u32> = HashMap::new();
            let mut cat = Categorical::default();
            for a in arrays {
                let strings = dict_to_strings(a).map_err(|e| e.field(name))?;
                for s in strings {
                    let code = match s {
                        None => Categorical::MISSING,
                        Some(s) => *index.entry(s.clone()).or_insert_with(|| {
                            cat.categories.push(s);
                            (cat.categories.len() - 1) as u32
                        }),
                    };
                    cat.codes.push(code);
                }
            }
            // Keep the dictionary's own order when there is one batch (categories as the writer had them).
            if arrays.len() == 1 {
                if let Some(values) = dict_values(arrays[0]) {
                    reorder_categories(&mut cat, &values);
                }
            }
            Column::Cat(cat)
        }
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
            let mut v = Vec::new();
            for a in arrays {
                v.extend(strings_of(a).map_err(|e| e.field(name))?);
            }
            Column::Str(v)
        }
        DataType::Float64 => Column::F64(floats::<Float64Type>(arrays, f64::NAN)),
        DataType::Float32 => Column::F32(floats::<Float32Type>(arrays, f32::NAN)),
        DataType::UInt32 => {
            let mut v = Vec::new();
            for a in arrays {
                if a.null_count() > 0 {
                    return Err(err("unexpected null"));
                }
                v.extend_from_slice(a.as_primitive::<UInt32Type>().values());
            }
            Column::U32(v)
        }
        DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::Int64
        | DataType::UInt8
        | DataType::UInt16
        | DataType::UInt64 => {
            let mut v = Vec::new();
            for a in arrays {
                let a = arrow_cast_i64(a).map_err(|e| e.field(name))?;
                v.extend(a);
            }
            Column::I64(v)
        }
        DataType::Boolean => Column::Bool(
            arrays
                .iter()
                .flat_map(|a| a.as_boolean().iter().collect::<Vec<_>>())
                .collect(),
        ),
        other => return Err(err(&format!("unsupported column type {other}"))),
    })
}

/// The values of float arrays one after the other, nulls as `nan`.
fn floats<T: arrow_array::ArrowPrimitiveType>(
    arrays: &[&ArrayRef],
    nan: T::Native,
) -> Vec<T::Native> {
    arrays
        .iter()
        .flat_map(|a| a.as_primitive::<T>().iter().map(|x| x.unwrap_or(nan)))
        .collect()
}

pub(super) fn arrow_cast_i64(a: &ArrayRef) -> Result<Vec<Option<i64>>> {
    macro_rules! conv {
        ($t:ty) => {
            a.as_primitive::<$t>()
                .iter()
                .map(|x| x.map(|v| v as i64))
                .collect()
        };
    }
    Ok(match a.data_type() {
        DataType::Int8 => conv!(Int8Type),
        DataType::Int16 => conv!(Int16Type),
        DataType::Int32 => conv!(Int32Type),
        DataType::Int64 => conv!(Int64Type),
        DataType::UInt8 => conv!(UInt8Type),
        DataType::UInt16 => conv!(UInt16Type),
        DataType::UInt64 => conv!(UInt64Type),
        other => bail!("expected an integer column, found {other}"),
    })
}

pub(super) fn strings_of(a: &ArrayRef) -> Result<Vec<Option<String>>> {
    Ok(match a.data_type() {
        DataType::Utf8 => a
            .as_string::<i32>()
            .iter()
            .map(|s| s.map(str::to_string))
            .collect(),
        DataType::LargeUtf8 => a
            .as_string::<i64>()
            .iter()
            .map(|s| s.map(str::to_string))
            .collect(),
        DataType::Utf8View => a
            .as_string_view()
            .iter()
            .map(|s| s.map(str::to_string))
            .collect(),
        other => bail!("expected strings, found {other}"),
    })
}

pub(super) fn dict_values(a: &ArrayRef) -> Option<Vec<String>> {
    let d = a.as_any_dictionary_opt()?;
    strings_of(d.values())
        .ok()
        .map(|v| v.into_iter().map(|s| s.unwrap_or_default()).collect())
}

pub(super) fn dict_to_strings(a: &ArrayRef) -> Result<Vec<Option<String>>> {
    let d = a
        .as_any_dictionary_opt()
        .ok_or_else(|| Error::new("expected a dictionary column"))?;
    let values = strings_of(d.values())?;
    if values.is_empty() {
        // An all-null categorical (no categories): arrow's normalized_keys() panics on it.
        return Ok(vec![None; a.len()]);
    }
    let keys = d.normalized_keys();
    Ok((0..a.len())
        .map(|i| {
            if a.is_null(i) {
                None
            } else {
                values.get(keys[i]).cloned().flatten()
            }
        })
        .collect())
}

pub(super) fn reorder_categories(cat: &mut Categorical, order: &[String]) {
    let pos: HashMap<&str, u32> = order
        .iter()
        .enumerate()
        .map(|(i, s)| (s.as_str(), i as u32))
        .collect();
    if cat.categories.iter().any(|c| !pos.contains_key(c.as_str())) {
        return;
    }
    let remap: Vec<u32> = cat.categories.iter().map(|c| pos[c.as_str()]).collect();
    for c in &mut cat.codes {
        if *c != Categorical::MISSING {
            *c = remap[*c as usize];
        }
    }
    cat.categories = order.to_vec();
    cat.compact();
}

pub(crate) fn get_arrays<'a>(
    batches: &'a [RecordBatch],
    schema: &Schema,
    name: &str,
) -> Result<Vec<&'a ArrayRef>> {
    let idx = schema.index_of(name).map_err(|_| {
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        Error::new(format!(
            "required column is missing (columns: {})",
            names.join(", ")
        ))
        .field(name)
    })?;
    Ok(batches.iter().map(|b| b.column(idx)).collect())
}

pub(super) fn required_strings(
    batches: &[RecordBatch],
    schema: &Schema,
    name: &str,
) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for a in get_arrays(batches, schema, name)? {
        for (i, s) in strings_of(a)
            .map_err(|e| e.field(name))?
            .into_iter()
            .enumerate()
        {
            match s {
                Some(s) => out.push(s),
                None => {
                    return Err(Error::new(format!("null at row {}", out.len() + i)).field(name))
                }
            }
        }
    }
    Ok(out)
}
