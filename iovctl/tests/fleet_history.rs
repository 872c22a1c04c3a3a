//! `iovctl history --ledger`, `plot`, `enroll` and `gateways` against a real `iov-ledger`
//! process fed by a real `iov-gateway` replaying the first frames of the real GPS trace.
//!
//! One world (ledger, synced gateway log) for all the checks below: starting it is the costly
//! part. Each check is a named function; the test runs them in order.

mod fleet_common;

use std::sync::Arc;

use anyhow::{ensure, Context as _, Result};
use fleet_common::*;
use ledger::sync_wire::QueryBlocks;

/// First and last record time of the trace (ns).
fn trace_span(w: &World) -> Result<(u64, u64)> {
    let text = std::fs::read_to_string(&w.trace)?;
    let t = |l: &str| -> Result<u64> {
        let s = l.split(')').next().context("time")?.trim_start_matches('(');
        let (a, b) = s.split_once('.').context("fraction")?;
        Ok(a.parse::<u64>()? * 1_000_000_000 + format!("{b:0<9}").parse::<u64>()?)
    };
    Ok((t(text.lines().next().context("empty")?)?, t(text.lines().last().context("empty")?)?))
}

fn history(
    w: &World,
    url: &str,
    from: u64,
    to: u64,
    extra: &[&str],
) -> Result<std::process::Output> {
    let mut args: Vec<String> = vec!["history".into()];
    args.extend(w.query_args(url));
    args.extend(["--from".into(), from.to_string(), "--to".into(), to.to_string()]);
    args.extend(extra.iter().map(|s| s.to_string()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    iovctl(&refs)
}

fn history_equals_the_trace_decoded(w: &World) -> Result<()> {
    let (t0, t1) = trace_span(w)?;
    let expected = expected_rows(&w.trace)?;
    ensure!(expected.len() > 10_000, "the trace decodes to {} rows only", expected.len());
    let o = history(w, &w.ledger.url(), t0, t1, &["--format", "jsonl"])?;
    ensure!(code(&o) == 0, "history exit {}: {}", code(&o), stderr(&o));
    let got = jsonl_rows(&stdout(&o))?;
    ensure!(
        got.len() == expected.len(),
        "{} rows, the trace decodes to {}",
        got.len(),
        expected.len()
    );
    ensure!(got == expected, "rows differ from the trace decoded");
    // The range runs to the end of the cosigned log: said on stderr, not hidden.
    ensure!(
        stderr(&o).contains("later records may not be cosigned"),
        "no open-end note: {}",
        stderr(&o)
    );
    // Before the trace: the ledger holds nothing; zero rows, and the note that this is not
    // a proof.
    let o = history(w, &w.ledger.url(), t0 - 3_600_000_000_000, t0 - 1, &["--format", "jsonl"])?;
    ensure!(code(&o) == 0 && stdout(&o).is_empty(), "empty range: {} {}", code(&o), stderr(&o));
    ensure!(stderr(&o).contains("not provable"), "empty range: {}", stderr(&o));
    // A key the lanes are not sealed for: verified, no rows, and a warning that says why.
    let stranger = ledger::keys::X25519Key::generate("stranger")?;
    ledger::keys::save_x25519(&w.dir.join("stranger.key"), &stranger)?;
    let mut args: Vec<String> = vec!["history".into()];
    args.extend(w.query_args(&w.ledger.url()));
    let k = args.iter().position(|a| a == "--key").context("--key")? + 1;
    args[k] = w.path("stranger.key");
    args.extend(["--from".into(), t0.to_string(), "--to".into(), t1.to_string()]);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = iovctl(&refs)?;
    ensure!(code(&o) == 0 && stdout(&o).lines().count() <= 1, "stranger: {}", stdout(&o));
    ensure!(
        stderr(&o).contains("no lane of the blocks in the range is sealed for key stranger"),
        "{}",
        stderr(&o)
    );
    // A window in the middle: both boundary blocks are checked, rows are exactly the window's.
    let (a, b) = (t0 + 30_000_000_000, t0 + 60_000_000_000);
    let o = history(w, &w.ledger.url(), a, b, &["--format", "jsonl"])?;
    ensure!(code(&o) == 0, "window: exit {}: {}", code(&o), stderr(&o));
    let got = jsonl_rows(&stdout(&o))?;
    let want: Vec<_> = expected.iter().filter(|r| r.0 >= a && r.0 <= b).cloned().collect();
    ensure!(!want.is_empty() && got == want, "window: {} rows, want {}", got.len(), want.len());
    // Machine formats carry the same rows; a signal selection only that signal.
    let o =
        history(w, &w.ledger.url(), a, b, &["--format", "csv", "--signals", "gnss_speed.Speed"])?;
    ensure!(code(&o) == 0, "csv: {}", stderr(&o));
    let csv = stdout(&o);
    let mut lines = csv.lines();
    ensure!(lines.next() == Some("ts,t_ns,source,message,signal,value,unit,label,id,data"));
    let speed: Vec<_> = want.iter().filter(|r| r.1 == "gnss_speed.Speed").collect();
    let rows: Vec<&str> = lines.collect();
    ensure!(
        rows.len() == speed.len() && !speed.is_empty(),
        "csv: {} rows, want {}",
        rows.len(),
        speed.len()
    );
    for (line, want) in rows.iter().zip(&speed) {
        let cols: Vec<&str> = line.split(',').collect();
        ensure!(cols[1] == want.0.to_string(), "csv t_ns {} != {}", cols[1], want.0);
        ensure!(
            cols[3] == "gnss_speed" && cols[4] == "Speed" && cols[6] == "m/s",
            "csv row {line}"
        );
        ensure!(cols[5].parse::<f64>()? == want.2, "csv value {} != {}", cols[5], want.2);
    }
    let o = history(w, &w.ledger.url(), a, b, &["--signals", "gnss_speed.Speed"])?;
    ensure!(
        code(&o) == 0 && stdout(&o).lines().count() == speed.len() + 1,
        "table: {}",
        stderr(&o)
    );
    ensure!(stdout(&o).contains("gnss_speed.Speed"), "table lacks the signal name");
    Ok(())
}

/// Runs history through the proxy with `tamper`, expects exit 1 and every word of `named`.
fn caught(w: &World, p: &Proxy, what: &str, tamper: Tamper, named: &[&str]) -> Result<()> {
    let (t0, _) = trace_span(w)?;
    p.set(Some(tamper));
    let o = history(w, &p.url(), t0 + 30_000_000_000, t0 + 60_000_000_000, &["--format", "jsonl"]);
    p.set(None);
    let o = o?;
    let err = stderr(&o);
    ensure!(code(&o) == 1, "{what}: exit {} (want 1); stderr: {err}", code(&o));
    ensure!(err.contains("VERIFICATION FAILED"), "{what}: stderr does not say so: {err}");
    for n in named {
        ensure!(err.contains(n), "{what}: stderr does not name {n:?}: {err}");
    }
    Ok(())
}

fn on_query(f: impl Fn(&mut QueryBlocks) + Send + Sync + 'static) -> Tamper {
    Arc::new(move |path: &str, body: Vec<u8>| {
        if !path.starts_with("/v1/query/") {
            return body;
        }
        match QueryBlocks::from_cbor(&body, 1 << 30) {
            Ok(mut q) => {
                f(&mut q);
                q.to_cbor()
            }
            Err(_) => body,
        }
    })
}

fn tampered_answers_are_caught_and_named(w: &World) -> Result<()> {
    let p = Proxy::start(w.ledger.addr)?;
    // Untampered through the proxy: verified.
    let (t0, _) = trace_span(w)?;
    let o = history(w, &p.url(), t0 + 30_000_000_000, t0 + 60_000_000_000, &["--format", "jsonl"])?;
    ensure!(code(&o) == 0, "through the proxy: {}", stderr(&o));

    // One byte of a header flipped in the raw response body.
    let raw_header: Tamper = Arc::new(|path: &str, mut body: Vec<u8>| {
        if let (true, Ok(q)) =
            (path.starts_with("/v1/query/"), QueryBlocks::from_cbor(&body, 1 << 30))
        {
            let h = &q.blocks[q.blocks.len() / 2].header;
            if let Some(pos) = body.windows(h.len()).position(|x| x == h.as_slice()) {
                body[pos + h.len() - 5] ^= 0x01;
            }
        }
        body
    });
    caught(w, &p, "flipped header byte", raw_header, &["heights"])?;
    caught(
        w,
        &p,
        "flipped lane byte",
        on_query(|q| {
            if let Some((_, ct)) = q.blocks.iter_mut().flat_map(|b| b.lanes.iter_mut()).next() {
                ct[100] ^= 0x80;
            }
        }),
        &["lane", "BLAKE3"],
    )?;
    caught(
        w,
        &p,
        "dropped block",
        on_query(|q| {
            if q.blocks.len() > 2 {
                q.blocks.remove(1);
            }
        }),
        &["holds"],
    )?;
    caught(
        w,
        &p,
        "dropped block, end adjusted",
        on_query(|q| {
            if q.blocks.len() > 2 {
                q.blocks.remove(1);
                for b in q.blocks.iter_mut().skip(1) {
                    b.height -= 1;
                }
                q.end -= 1;
                q.requested_end -= 1;
            }
        }),
        &["the header says height"],
    )?;
    caught(
        w,
        &p,
        "flipped checkpoint signature",
        on_query(|q| {
            let n = q.checkpoint.len();
            q.checkpoint[n - 10] ^= 0x04;
        }),
        &["checkpoint"],
    )?;
    caught(
        w,
        &p,
        "flipped range proof hash",
        on_query(|q| {
            if let Some(h) = q.range_proof.first_mut() {
                h.0[0] ^= 1;
            }
        }),
        &["root"],
    )?;
    // The ledger claims the time range ends with the first page: the block after it still
    // overlaps the range, and the boundary check names it.
    caught(
        w,
        &p,
        "narrowed time range",
        Arc::new(|path: &str, body: Vec<u8>| {
            if !path.contains("since_ns=") {
                return body;
            }
            match QueryBlocks::from_cbor(&body, 1 << 30) {
                Ok(mut q) => {
                    q.requested_end = q.end;
                    q.to_cbor()
                }
                Err(_) => body,
            }
        }),
        &["incomplete range", "overlaps"],
    )?;
    // A body that is not CBOR at all.
    caught(
        w,
        &p,
        "garbage body",
        Arc::new(
            |path: &str, body: Vec<u8>| {
                if path.starts_with("/v1/query/") {
                    b"not cbor".to_vec()
                } else {
                    body
                }
            },
        ),
        &["unreadable"],
    )?;
    Ok(())
}

fn refusals_without_the_right_token(w: &World) -> Result<()> {
    let (t0, t1) = trace_span(w)?;
    let url = w.ledger.url();
    // No token.
    let mut args: Vec<String> = vec!["history".into(), "--ledger".into(), url.clone()];
    args.extend(["--vehicle", VEHICLE, "--key"].map(String::from));
    args.push(w.path("org.key"));
    args.extend(["--from".into(), t0.to_string(), "--to".into(), t1.to_string()]);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = iovctl(&refs)?;
    ensure!(code(&o) == 2 && stderr(&o).contains("401"), "no token: {} {}", code(&o), stderr(&o));
    ensure!(stdout(&o).is_empty(), "no token: printed rows");
    // A token for another vehicle.
    let mut a2 = args.clone();
    a2.extend(["--token-file".into(), w.path("other.token")]);
    let refs: Vec<&str> = a2.iter().map(String::as_str).collect();
    let o = iovctl(&refs)?;
    ensure!(
        code(&o) == 2 && stderr(&o).contains("403"),
        "other scope: {} {}",
        code(&o),
        stderr(&o)
    );
    // The admin API with a query token, and with an unknown token.
    let o = iovctl(&["gateways", "--ledger", &url, "--token-file", &w.path("query.token")])?;
    ensure!(
        code(&o) == 2 && stderr(&o).contains("forbidden"),
        "gateways/query token: {}",
        stderr(&o)
    );
    ledger::keys::write_secret_file(&w.dir.join("bogus.token"), b"not-a-token\n")?;
    let o = iovctl(&[
        "enroll",
        "--ledger",
        &url,
        "--token-file",
        &w.path("bogus.token"),
        "--gateway-key",
        &w.gateway_vkey(),
        "--vehicle",
        "X",
        "--lanes",
        "a",
    ])?;
    ensure!(code(&o) == 2 && stderr(&o).contains("unauthorized"), "enroll/bogus: {}", stderr(&o));
    // A token file others can read is refused before anything is sent.
    std::fs::write(w.dir.join("open.token"), format!("{ADMIN_SECRET}\n"))?;
    std::fs::set_permissions(
        w.dir.join("open.token"),
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )?;
    let o = iovctl(&["gateways", "--ledger", &url, "--token-file", &w.path("open.token")])?;
    ensure!(code(&o) == 2, "world-readable token accepted: {}", stderr(&o));
    Ok(())
}

fn enroll_and_gateways_round_trip(w: &World) -> Result<()> {
    let url = w.ledger.url();
    let second = ledger::keys::generate_signer("iov.example/gw/second")?;
    let vk = second.verifier().to_vkey();
    let o = iovctl(&[
        "enroll",
        "--ledger",
        &url,
        "--token-file",
        &w.path("admin.token"),
        "--gateway-key",
        &vk,
        "--vehicle",
        "VIN-2",
        "--lanes",
        "factory,diag",
    ])?;
    ensure!(code(&o) == 0, "enroll: {}", stderr(&o));
    let stored: serde_json::Value = serde_json::from_str(stdout(&o).trim())?;
    ensure!(stored["origin"] == "iov.example/gw/second" && stored["unit"] == "VIN-2", "{stored}");
    let o = iovctl(&[
        "gateways",
        "--ledger",
        &url,
        "--token-file",
        &w.path("admin.token"),
        "--format",
        "json",
    ])?;
    ensure!(code(&o) == 0, "gateways: {}", stderr(&o));
    let list: Vec<serde_json::Value> = serde_json::from_str(stdout(&o).trim())?;
    ensure!(list.len() == 2, "{list:?}");
    let first = list.iter().find(|g| g["unit"] == VEHICLE).context("the test gateway")?;
    ensure!(first["vkey"] == w.gateway_vkey().as_str(), "vkey {first}");
    ensure!(first["mirrored"] == w.head && first["witnessed"] == w.head, "sizes {first}");
    let sec = list.iter().find(|g| g["unit"] == "VIN-2").context("the second gateway")?;
    ensure!(
        sec["lanes"] == serde_json::json!(["factory", "diag"]) && sec["vkey"] == vk.as_str(),
        "{sec}"
    );
    let o = iovctl(&["gateways", "--ledger", &url, "--token-file", &w.path("admin.token")])?;
    let table = stdout(&o);
    ensure!(
        table.starts_with("ORIGIN")
            && table.contains("iov.example/gw/second")
            && table.contains("factory,diag"),
        "{table}"
    );
    Ok(())
}

fn parquet_holds_the_same_rows(w: &World) -> Result<()> {
    use parquet::file::reader::{FileReader as _, SerializedFileReader};
    use parquet::record::RowAccessor as _;
    let (t0, t1) = trace_span(w)?;
    let o = history(w, &w.ledger.url(), t0, t1, &["--format", "parquet"])?;
    ensure!(code(&o) == 0, "parquet: {}", stderr(&o));
    ensure!(o.stdout.starts_with(b"PAR1") && o.stdout.ends_with(b"PAR1"), "not a parquet file");
    let f = w.dir.join("history.parquet");
    std::fs::write(&f, &o.stdout)?;
    let reader = SerializedFileReader::new(std::fs::File::open(&f)?)?;
    let schema = reader.metadata().file_metadata().schema_descr();
    let names: Vec<&str> = schema.columns().iter().map(|c| c.name()).collect();
    ensure!(names[..4] == ["t_ns", "origin", "lane", "height"] && names.len() == 13, "{names:?}");
    let mut got = Vec::new();
    for row in reader.get_row_iter(None)? {
        let row = row?;
        let (Ok(m), Ok(s), Ok(v)) = (row.get_string(5), row.get_string(6), row.get_double(7))
        else {
            continue;
        };
        got.push((row.get_long(0)? as u64, format!("{m}.{s}"), v));
    }
    got.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    let expected = expected_rows(&w.trace)?;
    ensure!(
        got == expected,
        "parquet: {} rows, the trace decodes to {}",
        got.len(),
        expected.len()
    );
    Ok(())
}

fn plot_draws_each_signal(w: &World) -> Result<()> {
    let (t0, t1) = trace_span(w)?;
    let out = w.dir.join("chart.png");
    let mut args: Vec<String> = vec!["plot".into()];
    args.extend(w.query_args(&w.ledger.url()));
    args.extend(["--from".into(), t0.to_string(), "--to".into(), t1.to_string()]);
    args.extend(["--signals".into(), "gnss_speed.Speed,gnss_pos.Latitude".into()]);
    args.extend(["--out".into(), out.display().to_string()]);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = iovctl(&refs)?;
    ensure!(code(&o) == 0, "plot: {}", stderr(&o));
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&out)?));
    let mut reader = decoder.read_info()?;
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf)?;
    ensure!(info.width == 1200 && info.height == 2 * 280, "png is {}x{}", info.width, info.height);
    let ch = info.color_type.samples();
    // Each panel (top, bottom half) has line pixels (blue) and text/axes (dark) drawn.
    for panel in 0..2u32 {
        let (mut blue, mut dark) = (0usize, 0usize);
        for y in panel * 280..(panel + 1) * 280 {
            for x in 0..1200u32 {
                let i = ((y * 1200 + x) as usize) * ch;
                let (r, g, b) = (buf[i], buf[i + 1], buf[i + 2]);
                if b > 180 && r < 80 && g < 80 {
                    blue += 1;
                }
                if r < 60 && g < 60 && b < 60 {
                    dark += 1;
                }
            }
        }
        ensure!(blue > 300, "panel {panel}: {blue} line pixels");
        ensure!(dark > 500, "panel {panel}: {dark} axis and text pixels");
    }
    let svg = w.dir.join("chart.svg");
    let last = args.len() - 1;
    args[last] = svg.display().to_string();
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = iovctl(&refs)?;
    ensure!(code(&o) == 0, "plot svg: {}", stderr(&o));
    let text = std::fs::read_to_string(&svg)?;
    for needle in ["gnss_speed.Speed", "gnss_pos.Latitude", "[m/s]", "[deg]", "<polyline"] {
        ensure!(text.contains(needle), "the SVG lacks {needle:?}");
    }
    Ok(())
}

#[test]
fn ledger_history_plot_enroll_against_a_real_ledger_fed_by_a_real_trace() -> Result<()> {
    let w = World::new(8)?;
    ensure!(w.head > 16, "only {} blocks: the ranges would not page", w.head);
    history_equals_the_trace_decoded(&w).context("history equals the trace decoded")?;
    tampered_answers_are_caught_and_named(&w).context("tampered answers")?;
    refusals_without_the_right_token(&w).context("refusals")?;
    parquet_holds_the_same_rows(&w).context("parquet")?;
    plot_draws_each_signal(&w).context("plot")?;
    enroll_and_gateways_round_trip(&w).context("enroll and gateways")?;
    Ok(())
}
