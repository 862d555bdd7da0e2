//! The log writer's I/O backend belongs to the storage a channel is opened on, not to the
//! process: channels on storages with different backends run side by side, and what one
//! backend wrote the other reads back.

mod common;

use std::sync::Arc;

use common::{open_on, peek_all, put_committed, test_config};
use millrace_engine::storage::{io_uring_available, IoBackend, IoBackendChoice, RealFs, Storage};
use millrace_engine::Channel;

/// The backends this machine can run: pwrite always, io_uring where rings can be created.
fn usable_backends() -> Vec<IoBackend> {
    if io_uring_available() {
        vec![IoBackend::Pwrite, IoBackend::IoUring]
    } else {
        println!(
            "io_uring half skipped: this kernel or container does not allow io_uring_setup; \
             run on a Linux host without a seccomp filter on io_uring to cover it"
        );
        vec![IoBackend::Pwrite]
    }
}

#[test]
fn channels_with_different_io_backends_run_in_one_process_and_read_each_others_logs() {
    let backends = usable_backends();
    let roots: Vec<tempfile::TempDir> = backends
        .iter()
        .map(|_| tempfile::tempdir().unwrap())
        .collect();
    let configs: Vec<_> = roots
        .iter()
        .map(|root| test_config(root.path(), 2))
        .collect();

    // Both channels open at once, each writing with its own backend.
    let channels: Vec<_> = backends
        .iter()
        .zip(&configs)
        .map(|(&backend, config)| {
            let storage: Arc<dyn Storage> = Arc::new(RealFs::new(backend));
            open_on(&storage, config).unwrap()
        })
        .collect();
    for (backend, channel) in backends.iter().zip(&channels) {
        for batch in 0..3 {
            let first = format!("{backend:?}-{batch}-a");
            let second = format!("{backend:?}-{batch}-b");
            put_committed(channel, &[&first, &second]);
        }
    }
    for channel in &channels {
        channel.close().unwrap();
    }
    drop(channels);

    // Each log reopened with the other backend (or the same, when only one is usable).
    for (index, (backend, config)) in backends.iter().zip(&configs).enumerate() {
        let other = backends[(index + 1) % backends.len()];
        let storage: Arc<dyn Storage> = Arc::new(RealFs::new(other));
        let reopened = open_on(&storage, config).unwrap();
        let expected: Vec<String> = (0..3)
            .flat_map(|batch| {
                [
                    format!("{backend:?}-{batch}-a"),
                    format!("{backend:?}-{batch}-b"),
                ]
            })
            .collect();
        assert_eq!(peek_all(&reopened), expected, "written with {backend:?}");
        reopened.close().unwrap();
    }
}

#[test]
fn a_storage_keeps_the_backend_it_was_built_with() {
    assert_eq!(
        RealFs::new(IoBackend::Pwrite).io_backend(),
        IoBackend::Pwrite
    );
    assert_eq!(
        RealFs::new(IoBackend::IoUring).io_backend(),
        IoBackend::IoUring
    );
    assert_eq!(
        RealFs::with_choice(IoBackendChoice::Pwrite)
            .unwrap()
            .io_backend(),
        IoBackend::Pwrite
    );
    assert_eq!(RealFs::auto().io_backend(), IoBackend::Pwrite);
    assert_eq!(
        RealFs::with_choice(IoBackendChoice::Auto)
            .unwrap()
            .io_backend(),
        IoBackend::Pwrite
    );
}
