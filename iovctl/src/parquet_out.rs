//! `history --ledger --format parquet`: the verified rows as an Apache Parquet file on stdout,
//! written with the `parquet` crate's low-level column writer (no arrow). One row group per
//! [`ROWS_PER_GROUP`] rows, so memory stays bounded by a group whatever the range; snappy
//! compression. Columns (nullable unless noted):
//!
//! `t_ns` INT64 TIMESTAMP(NANOS, UTC) required, `origin` STRING required, `lane` STRING
//! required, `height` INT64 required, `source`, `message`, `signal` STRING, `value` DOUBLE,
//! `unit`, `label`, `id`, `data`, `payload` STRING.

use std::io::Write;
use std::sync::Arc;

use iovctl::fleet::rows::Row;
use parquet::basic::Compression;
use parquet::data_type::{ByteArray, ByteArrayType, DoubleType, Int64Type};
use parquet::errors::ParquetError;
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::parser::parse_message_type;

/// Rows buffered per row group.
pub const ROWS_PER_GROUP: usize = 65_536;

const SCHEMA: &str = "message iov_history_row {
  REQUIRED INT64 t_ns (TIMESTAMP(NANOS,true));
  REQUIRED BYTE_ARRAY origin (STRING);
  REQUIRED BYTE_ARRAY lane (STRING);
  REQUIRED INT64 height;
  OPTIONAL BYTE_ARRAY source (STRING);
  OPTIONAL BYTE_ARRAY message (STRING);
  OPTIONAL BYTE_ARRAY signal (STRING);
  OPTIONAL DOUBLE value;
  OPTIONAL BYTE_ARRAY unit (STRING);
  OPTIONAL BYTE_ARRAY label (STRING);
  OPTIONAL BYTE_ARRAY id (STRING);
  OPTIONAL BYTE_ARRAY data (STRING);
  OPTIONAL BYTE_ARRAY payload (STRING);
}";

/// Buffers rows and writes them as row groups.
pub struct ParquetSink<W: Write + Send> {
    writer: SerializedFileWriter<W>,
    rows: Vec<Row>,
}

fn io(e: ParquetError) -> std::io::Error {
    std::io::Error::other(format!("parquet: {e}"))
}

impl<W: Write + Send> ParquetSink<W> {
    pub fn new(out: W) -> std::io::Result<ParquetSink<W>> {
        let schema = Arc::new(parse_message_type(SCHEMA).map_err(io)?);
        let props =
            Arc::new(WriterProperties::builder().set_compression(Compression::SNAPPY).build());
        let writer = SerializedFileWriter::new(out, schema, props).map_err(io)?;
        Ok(ParquetSink { writer, rows: Vec::new() })
    }

    pub fn row(&mut self, r: Row) -> std::io::Result<()> {
        self.rows.push(r);
        if self.rows.len() >= ROWS_PER_GROUP {
            self.flush_group()?;
        }
        Ok(())
    }

    fn flush_group(&mut self) -> std::io::Result<()> {
        if self.rows.is_empty() {
            return Ok(());
        }
        let rows = std::mem::take(&mut self.rows);
        let mut rg = self.writer.next_row_group().map_err(io)?;
        let mut index = 0;
        while let Some(mut col) = rg.next_column().map_err(io)? {
            match index {
                0 => {
                    let v: Vec<i64> = rows.iter().map(|r| r.t_ns as i64).collect();
                    col.typed::<Int64Type>().write_batch(&v, None, None).map_err(io)?;
                }
                3 => {
                    let v: Vec<i64> = rows.iter().map(|r| r.height as i64).collect();
                    col.typed::<Int64Type>().write_batch(&v, None, None).map_err(io)?;
                }
                1 | 2 => {
                    let v: Vec<ByteArray> = rows
                        .iter()
                        .map(|r| ByteArray::from(if index == 1 { &*r.origin } else { &*r.lane }))
                        .collect();
                    col.typed::<ByteArrayType>().write_batch(&v, None, None).map_err(io)?;
                }
                7 => {
                    let def: Vec<i16> = rows.iter().map(|r| i16::from(r.value.is_some())).collect();
                    let v: Vec<f64> = rows.iter().filter_map(|r| r.value).collect();
                    col.typed::<DoubleType>().write_batch(&v, Some(&def), None).map_err(io)?;
                }
                i => {
                    let field = |r: &Row| -> Option<String> {
                        match i {
                            4 => r.source.as_deref().map(str::to_owned),
                            5 => r.message.clone(),
                            6 => r.signal.clone(),
                            8 => r.unit.clone().filter(|u| !u.is_empty()),
                            9 => r.label.clone(),
                            10 => r.id.clone(),
                            11 => r.data.clone(),
                            _ => r.payload.clone(),
                        }
                    };
                    let vals: Vec<Option<String>> = rows.iter().map(field).collect();
                    let def: Vec<i16> = vals.iter().map(|v| i16::from(v.is_some())).collect();
                    let v: Vec<ByteArray> =
                        vals.into_iter().flatten().map(|s| ByteArray::from(s.as_str())).collect();
                    col.typed::<ByteArrayType>().write_batch(&v, Some(&def), None).map_err(io)?;
                }
            }
            col.close().map_err(io)?;
            index += 1;
        }
        rg.close().map_err(io)?;
        Ok(())
    }

    /// Writes the last group and the footer.
    pub fn finish(mut self) -> std::io::Result<()> {
        self.flush_group()?;
        self.writer.close().map_err(io)?;
        Ok(())
    }
}
