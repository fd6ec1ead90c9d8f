//! ONNX tensors and types as kiln's: element types, initializers (inline or in external-data
//! files), and the declared types of graph inputs.

use std::path::Path;

use kiln_ir::interp::{Data, Tensor};
use kiln_ir::DType;

use crate::proto::tensor_proto::{DataLocation, DataType};
use crate::proto::TensorProto;

/// The most elements one tensor may have (as kiln's own shapes are bounded).
const MAX_ELEMENTS: u64 = 1 << 40;

/// kiln's dtype for ONNX element type `t`, or the ONNX type's name when kiln has none.
pub fn dtype(t: i32) -> Result<DType, String> {
    let t = DataType::try_from(t).map_err(|_| format!("element type {t}"))?;
    Ok(match t {
        DataType::Float => DType::F32,
        DataType::Double => DType::F64,
        DataType::Float16 => DType::F16,
        DataType::Bfloat16 => DType::BF16,
        DataType::Int32 => DType::I32,
        DataType::Int64 => DType::I64,
        DataType::Uint8 => DType::U8,
        DataType::Uint32 => DType::U32,
        DataType::Bool => DType::Bool,
        other => return Err(other.as_str_name().to_lowercase()),
    })
}

/// The shape of `dims`, refusing negative or zero dimensions (kiln has no empty arrays) and
/// sizes past kiln's bound.
pub fn shape(dims: &[i64]) -> Result<Vec<usize>, String> {
    let mut elements = 1u64;
    for &d in dims {
        if d <= 0 {
            return Err(format!("a dimension of {d} (kiln's arrays have at least one element on every axis)"));
        }
        elements = elements.checked_mul(d as u64).filter(|&n| n <= MAX_ELEMENTS).ok_or("too many elements")?;
    }
    Ok(dims.iter().map(|&d| d as usize).collect())
}

/// The tensor `t` holds, reading external data relative to `dir`. It may be empty, as ONNX's
/// placeholders for omitted inputs are (a Resize's `roi`); an empty tensor is refused only if
/// it is used as a value.
pub fn decode(t: &TensorProto, dir: &Path) -> Result<Tensor, String> {
    let dtype = dtype(t.data_type).map_err(|name| format!("its element type {name} has no kiln dtype"))?;
    let shape = if t.dims.contains(&0) && t.dims.iter().all(|&d| d >= 0) {
        t.dims.iter().map(|&d| d as usize).collect()
    } else {
        shape(&t.dims)?
    };
    let n: usize = shape.iter().product();
    let bytes = n * dtype.size_bytes();
    let data = if t.data_location == DataLocation::External as i32 {
        Data::from_bytes(dtype, &external(t, dir, bytes)?)
    } else if !t.raw_data.is_empty() {
        if t.raw_data.len() != bytes {
            return Err(format!("its raw data has {} bytes, its shape {shape:?} needs {bytes}", t.raw_data.len()));
        }
        Data::from_bytes(dtype, &t.raw_data)
    } else {
        typed_fields(t, dtype, n)?
    };
    let data = data.ok_or("its data does not fill its shape")?;
    if data.len() != n {
        return Err(format!("it holds {} elements, its shape {shape:?} needs {n}", data.len()));
    }
    Ok(Tensor::new(shape, data))
}

/// The data of a tensor stored in its typed fields (`float_data`, `int64_data`, ...), where
/// ONNX keeps 16-bit floats, bools and small integers in `int32_data`.
fn typed_fields(t: &TensorProto, dtype: DType, n: usize) -> Result<Option<Data>, String> {
    let count =
        |len: usize| if len == n { Ok(()) } else { Err(format!("it holds {len} elements, its shape needs {n}")) };
    Ok(Some(match dtype {
        DType::F32 => {
            count(t.float_data.len())?;
            Data::F32(t.float_data.clone())
        }
        DType::F64 => {
            count(t.double_data.len())?;
            Data::F64(t.double_data.clone())
        }
        DType::I64 => {
            count(t.int64_data.len())?;
            Data::I64(t.int64_data.clone())
        }
        DType::U32 => {
            count(t.uint64_data.len())?;
            Data::U32(t.uint64_data.iter().map(|&v| v as u32).collect())
        }
        DType::I32 | DType::U8 | DType::Bool | DType::F16 | DType::BF16 => {
            count(t.int32_data.len())?;
            let v = &t.int32_data;
            match dtype {
                DType::I32 => Data::I32(v.clone()),
                DType::U8 => Data::U8(v.iter().map(|&x| x as u8).collect()),
                DType::Bool => Data::Bool(v.iter().map(|&x| x != 0).collect()),
                DType::F16 => Data::F16(v.iter().map(|&x| half::f16::from_bits(x as u16)).collect()),
                _ => Data::BF16(v.iter().map(|&x| half::bf16::from_bits(x as u16)).collect()),
            }
        }
    }))
}

/// The bytes of an initializer stored outside the model: `location` (a file beside the model,
/// never outside its folder), `offset` and `length`.
fn external(t: &TensorProto, dir: &Path, bytes: usize) -> Result<Vec<u8>, String> {
    use std::io::{Read, Seek, SeekFrom};
    let entry = |key: &str| t.external_data.iter().find(|e| e.key == key).map(|e| e.value.as_str());
    let location = entry("location").ok_or("its external data names no location")?;
    let relative = Path::new(location);
    if relative.is_absolute() || relative.components().any(|c| !matches!(c, std::path::Component::Normal(_))) {
        return Err(format!("its external data file `{location}` is not a plain path inside the model's folder"));
    }
    let number = |key: &str| -> Result<u64, String> {
        entry(key).map_or(Ok(0), |v| v.parse().map_err(|_| format!("its external data `{key}` is `{v}`")))
    };
    let (offset, length) = (number("offset")?, number("length")?);
    if length != 0 && length != bytes as u64 {
        return Err(format!("its external data is {length} bytes long, its shape needs {bytes}"));
    }
    let path = dir.join(relative);
    let cannot = |e: std::io::Error| format!("its external data file `{}`: {e}", path.display());
    let mut file = std::fs::File::open(&path).map_err(cannot)?;
    file.seek(SeekFrom::Start(offset)).map_err(cannot)?;
    let mut data = Vec::with_capacity(bytes.min(1 << 30));
    file.take(bytes as u64).read_to_end(&mut data).map_err(cannot)?;
    if data.len() != bytes {
        return Err(format!(
            "its external data file `{}` ends {} bytes short of offset {offset} + {bytes}",
            path.display(),
            bytes - data.len()
        ));
    }
    Ok(data)
}
