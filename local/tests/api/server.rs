//! Starting and stopping: the listener, the credentials and their env file, one server per data
//! directory, SigV4, and a dropped server that stops answering.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use s3upfs_local::LocalServer;

use crate::common::{B, Local, client_with, list, start_in, status};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_listens_on_loopback_with_random_hex_credentials() {
    let local = Local::start();
    assert!(local.server.endpoint().starts_with("http://127.0.0.1:"));
    assert_eq!(local.server.access_key().len(), 32);
    assert_eq!(local.server.secret_key().len(), 64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_env_file_in_the_canonical_data_dir_has_mode_0600_and_names_endpoint_bucket_and_keys() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = start_in(&data);
    let env = server.env_file();
    assert_eq!(env, data.canonicalize().unwrap().join(".s3upfs-local.env"));
    let mode = fs::metadata(env).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let expected = format!(
        "S3UPFS_ENDPOINT={}\nS3UPFS_BUCKET=s3upfs\nAWS_ACCESS_KEY_ID={}\nAWS_SECRET_ACCESS_KEY={}\nAWS_REGION=us-east-1\n",
        server.endpoint(),
        server.access_key(),
        server.secret_key()
    );
    assert_eq!(fs::read_to_string(env).unwrap(), expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_server_on_the_same_data_dir_is_refused_as_address_in_use() {
    let local = Local::start();
    let handle = tokio::runtime::Handle::current();
    let err = LocalServer::start(&handle, local.dir.path()).err().unwrap();
    assert_eq!(err.kind(), io::ErrorKind::AddrInUse, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_only_bucket_is_s3upfs_and_the_env_file_is_not_one_of_its_objects() {
    let Local { c, .. } = &Local::start();
    let buckets = c.list_buckets().send().await.unwrap();
    let names: Vec<_> = buckets.buckets().iter().filter_map(|b| b.name()).collect();
    assert_eq!(names, ["s3upfs"]);
    let (keys, prefixes) = list(c, "", false, None).await;
    assert!(
        keys.is_empty() && prefixes.is_empty(),
        "{keys:?} {prefixes:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_climbing_out_of_the_bucket_to_the_env_file_is_refused_with_400() {
    let Local { c, .. } = &Local::start();
    let e = c
        .get_object()
        .bucket(B)
        .key("../.s3upfs-local.env")
        .send()
        .await
        .unwrap_err();
    assert_eq!(status(&e), 400, "{e:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_signed_with_a_wrong_secret_is_refused_with_403() {
    let Local { server, .. } = &Local::start();
    let wrong = client_with(server.endpoint(), server.access_key(), "0000");
    let e = wrong.list_objects_v2().bucket(B).send().await.unwrap_err();
    assert_eq!(status(&e), 403, "{e:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_server_stops_answering() {
    let Local {
        server, dir: _dir, ..
    } = Local::start();
    let endpoint = server.endpoint().to_owned();
    drop(server);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let c = client_with(&endpoint, "a", "b");
    let e = c.list_objects_v2().bucket(B).send().await.unwrap_err();
    assert!(
        e.raw_response().is_none(),
        "server still answers after drop: {e:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_restarted_on_the_same_data_dir_writes_new_credentials() {
    let local = Local::start();
    let before = fs::read_to_string(local.server.env_file()).unwrap();
    let local = local.restart();
    assert_ne!(fs::read_to_string(local.server.env_file()).unwrap(), before);
}
