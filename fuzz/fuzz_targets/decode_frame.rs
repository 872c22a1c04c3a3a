//! Arbitrary frames through decoders built from real DBCs (Intel, Motorola, CAN FD, multiplexed,
//! J1939): a decode never panics, and encoding what was decoded never panics either.
#![no_main]
use std::sync::OnceLock;

use can_decoders::decode::{Decoded, Decoder, EncodeOptions};
use can_decoders::{dbc, CanFrame, CanId, FrameKind};
use libfuzzer_sys::fuzz_target;

const DBCS: &[&[u8]] = &[
    include_bytes!("../../fixtures/dbc/css-electronics/canmod-gps.dbc"),
    include_bytes!("../../fixtures/dbc/opendbc/vw_meb.dbc"),
    include_bytes!("../../fixtures/dbc/opendbc/FORD_CADS_64.dbc"),
    include_bytes!("../../fixtures/dbc/cantools/issue_184_extended_mux_cascaded.dbc"),
    include_bytes!("../../fixtures/dbc/canmatrix/j1939.dbc"),
];

fn decoder() -> &'static Decoder {
    static DECODER: OnceLock<Decoder> = OnceLock::new();
    DECODER.get_or_init(|| {
        let mut b = Decoder::builder();
        let dbs: Vec<_> = DBCS
            .iter()
            .filter_map(|bytes| dbc::parse_bytes(bytes, None, &dbc::LoadOptions::default()).ok())
            .collect();
        for db in &dbs {
            b.add_database(db, &[]);
        }
        b.j1939_by_pgn(true);
        b.build().map(|(d, _)| d).unwrap_or_else(|e| panic!("fixture DBCs build: {e}"))
    })
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 5 {
        return;
    }
    let raw = u32::from_le_bytes([data[0], data[1], data[2], data[3]]);
    let flags = data[4];
    let payload = &data[5..data.len().min(5 + 64)];
    let id = if flags & 1 == 1 { CanId::extended(raw & 0x1FFF_FFFF) } else { CanId::standard(raw & 0x7FF) };
    let Some(id) = id else { return };
    let kind = if flags & 2 == 2 { FrameKind::Fd { brs: true, esi: false } } else { FrameKind::Data };
    let Ok(frame) = CanFrame::new(id, kind, payload) else { return };
    let d = decoder();
    let mut out = Decoded::default();
    if let Some(key) = d.decode(d.bus("can0"), &frame, &mut out) {
        let values: Vec<(usize, f64)> = out.values.iter().map(|v| (v.signal, v.value)).collect();
        let _ = d.encode(key, &values, &EncodeOptions { strict: false, padding: false });
    }
});
