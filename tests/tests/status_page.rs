//! The status page (`GET /` on channeld's HTTP listener) in a real headless Chromium
//! against a real channeld: it loads without console errors, shows the channels, data
//! dirs and adapters with the numbers the JSON endpoints give, follows puts, and shows a
//! channel whose data dir was removed as unhealthy. Screenshots (a wide screen and a
//! phone) are written to `<target>/status-page/`.
//!
//! Needs Debian's `chromium` (`apt-get install chromium`; `.ci/run` installs it); without
//! it the test says so and passes as skipped, unless `CI=true`.

use std::time::Duration;

use millrace_e2e::browser::{chromium_binary, Browser, ConsoleEntry};
use millrace_e2e::{
    file_channels_config, skip_without_tool, successful_lines, target_dir, wait_until, Server,
    ServerSetup, AGENT,
};
use serde_json::Value;

/// Longest wait for the page to show something the server already has: a few polls on
/// a loaded machine.
const PAGE_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest wait for a supervised adapter to fail and be restarted.
const ADAPTER_FAILURE_TIMEOUT: Duration = Duration::from_secs(60);
/// The wide screenshot's viewport, CSS pixels.
const WIDE_VIEWPORT: (u32, u32) = (1440, 900);
/// A phone's viewport (an iPhone 13's), CSS pixels.
const PHONE_VIEWPORT: (u32, u32) = (390, 844);

/// File channels c1 and c2, memory channel m1 fed by a netcat source r1, and a netcat
/// source r2 that cannot listen (its port is held), so it fails and restarts.
fn config(held_port: u16) -> String {
    let file_channels = file_channels_config(&["c1", "c2"], "");
    let file_channel_keys = file_channels
        .lines()
        .filter(|line| !line.starts_with(&format!("{AGENT}.channels =")))
        .collect::<Vec<_>>()
        .join("\n");
    format!(
        "{AGENT}.channels = c1 c2 m1\n\
         {file_channel_keys}\n\
         {AGENT}.channels.c1.capacity = 1000\n\
         {AGENT}.channels.c1.transactionCapacity = 100\n\
         {AGENT}.channels.m1.type = memory\n\
         {AGENT}.channels.m1.capacity = 500\n\
         {AGENT}.sources = r1 r2\n\
         {AGENT}.sources.r1.type = netcat\n\
         {AGENT}.sources.r1.channels = m1\n\
         {AGENT}.sources.r1.bind = 127.0.0.1\n\
         {AGENT}.sources.r1.port = 0\n\
         {AGENT}.sources.r2.type = netcat\n\
         {AGENT}.sources.r2.channels = m1\n\
         {AGENT}.sources.r2.bind = 127.0.0.1\n\
         {AGENT}.sources.r2.port = {held_port}\n"
    )
}

fn channel_field(channel: &str, field: &str) -> String {
    format!(
        "(document.querySelector('[data-channel=\"{channel}\"] [data-field=\"{field}\"]') || {{}})"
    )
}

/// The page's number for a channel's figure (its `data-value`), as JSON.
fn shown_value(browser: &mut Browser, channel: &str, field: &str) -> Value {
    browser.evaluate(&format!(
        "{}.dataset?.value ?? null",
        channel_field(channel, field)
    ))
}

fn shown_text(browser: &mut Browser, channel: &str, field: &str) -> String {
    browser
        .evaluate(&format!(
            "{}.textContent ?? null",
            channel_field(channel, field)
        ))
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// Console errors, less the ones a 503 from `/health` causes: Chromium logs every
/// response of status 400 or more, and `/health` answers 503 by contract while a channel
/// is unhealthy.
fn unexpected_errors(errors: Vec<ConsoleEntry>) -> Vec<ConsoleEntry> {
    errors
        .into_iter()
        .filter(|entry| !(entry.source == "network" && entry.text.contains("/health")))
        .collect()
}

#[test]
fn status_page_shows_live_channels_dirs_and_adapters_and_an_unhealthy_channel() {
    let Some(chromium) = chromium_binary() else {
        skip_without_tool(
            "the status page test needs Chromium: apt-get install chromium (or set MILLRACE_CHROMIUM)",
        );
        return;
    };
    let holder = std::net::TcpListener::bind("127.0.0.1:0").expect("hold a port");
    let held_port = holder.local_addr().expect("the held port").port();
    let server = Server::start(ServerSetup::with_config(config(held_port)));
    successful_lines(&server.channelctl("put", &["--channel", "c1"], b"a\nb\nc\n"));
    assert!(
        wait_until(ADAPTER_FAILURE_TIMEOUT, || {
            server.http_json("/health").1["adapters"]["r2"]["restarts"].as_u64() >= Some(1)
        }),
        "r2 never failed: {}",
        server.http_json("/health").1
    );

    let mut browser = Browser::start(&chromium, WIDE_VIEWPORT.0, WIDE_VIEWPORT.1);
    browser.set_viewport(WIDE_VIEWPORT.0, WIDE_VIEWPORT.1, false);
    let url = format!("http://{}/", server.http_address());
    browser.navigate(&url);
    assert!(
        browser.wait_for(
            PAGE_TIMEOUT,
            "Number(document.body.dataset.polls || 0) >= 2"
        ),
        "the page never rendered a reading; console: {:?}",
        browser.console()
    );
    assert_eq!(
        browser.console_errors().len(),
        0,
        "console errors on a healthy server: {:?}",
        browser.console_errors()
    );

    // The channels, with the numbers /metrics and /health give.
    assert_eq!(shown_value(&mut browser, "c1", "size"), "3");
    assert_eq!(shown_value(&mut browser, "c1", "capacity"), "1000");
    assert_eq!(shown_text(&mut browser, "c1", "type"), "file");
    assert_eq!(shown_text(&mut browser, "c1", "state"), "open");
    assert_eq!(shown_value(&mut browser, "m1", "capacity"), "500");
    assert_eq!(shown_text(&mut browser, "m1", "type"), "memory");
    let (_, health) = server.http_json("/health");
    let recovery_path = health["channels"]["c1"]["recovery"]["path"]
        .as_str()
        .expect("c1's recovery path");
    assert_eq!(
        shown_text(&mut browser, "c1", "recovery-path"),
        recovery_path
    );
    assert_eq!(
        browser.evaluate("document.getElementById('server-status').textContent"),
        "degraded"
    );

    // Data dirs: one row each for c1 and c2, with bytes written and free space.
    let dir_rows = browser.evaluate(
        "[...document.querySelectorAll('#data-dirs tbody tr[data-channel]')].map(row => \
         [row.dataset.channel, row.dataset.dir, \
          Number(row.querySelector('[data-field=\"bytes-written\"]').dataset.value), \
          Number(row.querySelector('[data-field=\"free\"]').dataset.value)])",
    );
    let rows = dir_rows.as_array().expect("rows");
    assert_eq!(rows.len(), 2, "{dir_rows}");
    assert_eq!(rows[0][0], "c1");
    assert_eq!(rows[0][1], "c1/data");
    assert!(
        rows[0][2].as_f64() > Some(0.0),
        "c1 wrote bytes: {dir_rows}"
    );
    assert!(
        rows[0][3].as_f64() > Some(0.0),
        "free space shown: {dir_rows}"
    );
    assert_eq!(rows[1][0], "c2");

    // Adapters: r1 running, r2 failing with restarts and its error.
    let adapters = browser.evaluate(
        "Object.fromEntries([...document.querySelectorAll('#adapters tr[data-adapter]')].map(row => \
         [row.dataset.adapter, [row.dataset.state, \
          Number(row.querySelector('[data-field=\"restarts\"]').textContent), row.textContent]]))",
    );
    assert_eq!(adapters["r1"][0], "running", "{adapters}");
    assert_eq!(adapters["r1"][1], 0, "{adapters}");
    assert_eq!(adapters["r2"][0], "failing", "{adapters}");
    assert!(adapters["r2"][1].as_u64() >= Some(1), "{adapters}");
    assert!(
        adapters["r2"][2]
            .as_str()
            .is_some_and(|text| text.contains(&format!("cannot listen on 127.0.0.1:{held_port}"))),
        "{adapters}"
    );

    // Puts show up: size, totals, a put rate and a commit latency.
    let bodies: String = (0..40).map(|index| format!("event {index}\n")).collect();
    successful_lines(&server.channelctl(
        "put",
        &["--channel", "c1", "--batch", "5"],
        bodies.as_bytes(),
    ));
    assert!(
        browser.wait_for(
            PAGE_TIMEOUT,
            &format!(
                "{}.dataset?.value === '43' && {}.dataset?.value === '43'",
                channel_field("c1", "size"),
                channel_field("c1", "puts")
            )
        ),
        "the page did not follow the puts: size {}, puts {}",
        shown_value(&mut browser, "c1", "size"),
        shown_value(&mut browser, "c1", "puts")
    );
    assert!(
        browser.wait_for(
            PAGE_TIMEOUT,
            &format!(
                "Number({}.dataset?.value) > 0",
                channel_field("c1", "commit-latency")
            )
        ),
        "no commit latency shown"
    );
    assert!(
        browser.wait_for(
            PAGE_TIMEOUT,
            &format!(
                "Number({}.dataset?.samples) >= 2",
                channel_field("c1", "sparkline")
            )
        ),
        "the sparkline has no history"
    );
    let screenshots = target_dir().join("status-page");
    browser.screenshot(&screenshots.join("wide.png"));

    // A data dir removed under the running channel: fail-stop, shown as unhealthy.
    std::fs::remove_dir_all(server.directory().join("c2/data")).expect("remove c2/data");
    assert!(
        browser.wait_for(
            PAGE_TIMEOUT,
            "document.querySelector('[data-channel=\"c2\"]')?.dataset.state === 'unhealthy'"
        ),
        "c2 not shown unhealthy; /health says {}",
        server.http_json("/health").1
    );
    let reason = shown_text(&mut browser, "c2", "reason");
    assert!(
        reason.contains("c2/data"),
        "the reason names the dir: {reason}"
    );
    assert_eq!(shown_text(&mut browser, "c1", "state"), "open");
    assert!(browser.wait_for(
        PAGE_TIMEOUT,
        "document.getElementById('server-status').textContent === 'unavailable'"
    ));
    browser.screenshot(&screenshots.join("wide-unhealthy.png"));

    browser.set_viewport(PHONE_VIEWPORT.0, PHONE_VIEWPORT.1, true);
    browser.pump_events(Duration::from_millis(500));
    let overflow = browser
        .evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth");
    assert_eq!(overflow, 0, "the phone layout scrolls sideways");
    browser.screenshot(&screenshots.join("phone.png"));
    assert_eq!(
        unexpected_errors(browser.console_errors()).len(),
        0,
        "console errors: {:?}",
        browser.console_errors()
    );
    println!("status page screenshots in {}", screenshots.display());
    drop(holder);
}

#[test]
fn the_root_path_gives_browsers_the_page_and_other_clients_the_endpoint_list() {
    let server = Server::start(ServerSetup::with_config(file_channels_config(&["c1"], "")));
    let listing = server.http_get("/");
    assert_eq!(listing.status, 200);
    assert!(listing.body.contains("GET /status"), "{}", listing.body);
    let (status, body) = server.http_json("/status");
    assert_eq!(status, 200);
    assert_eq!(body["channels"]["c1"]["commits"]["count"], 0, "{body}");
    assert_eq!(
        body["channels"]["c1"]["minimum_required_space_bytes"], 1_048_576,
        "{body}"
    );
    assert_eq!(body["channels"]["c1"]["data_dirs"][0]["path"], "c1/data");
    assert!(
        body["channels"]["c1"]["data_dirs"][0]["usable_bytes"].as_u64() > Some(0),
        "{body}"
    );
    successful_lines(&server.channelctl("put", &["--channel", "c1"], b"x\ny\n"));
    let (_, body) = server.http_json("/status");
    let commits = &body["channels"]["c1"]["commits"];
    assert_eq!(commits["count"], 1, "one put commit: {body}");
    assert!(commits["total_us"].as_u64() > Some(0), "{body}");
    assert_eq!(commits["max_us"], commits["total_us"], "{body}");
}
