use serde_json::json;

use crate::common::*;

const RENDEZVOUS: &str = r#"
import json, os, socket, time
host = socket.gethostname()
rc = json.load(open("/opt/ml/input/config/resourceconfig.json"))
# Every host binds the same port: only possible when each has its own network.
srv = socket.socket()
srv.bind(("0.0.0.0", 7000))
srv.listen()
if host == "algo-1":
    conn, peer = srv.accept()
    msg = conn.recv(100).decode()
    open("/opt/ml/model/got.txt", "w").write(f"{msg} from {peer[0]}")
else:
    for _ in range(100):
        try:
            s = socket.create_connection(("algo-1", 7000), timeout=1)
            break
        except OSError:
            time.sleep(0.1)
    s.sendall(f"hello from {host}".encode())
    s.close()
open(f"/opt/ml/model/{host}.json", "w").write(json.dumps({"iface": rc["network_interface_name"], "me": socket.gethostbyname(host), "peer": socket.gethostbyname("algo-1")}))
"#;

#[test]
fn hosts_have_their_own_network_and_find_each_other_by_name() {
    let h = Home::new();
    h.data(".", &[("rendezvous.py", RENDEZVOUS.as_bytes())]);
    let mut j = job("rendezvous", "", None);
    j["AlgorithmSpecification"]["ContainerEntrypoint"] = json!(["python3", "rendezvous.py"]);
    j["ResourceConfig"]["InstanceCount"] = json!(2);
    let out = h.train(&j);
    assert!(out.status.success(), "{}", text(&out));
    let files = untar(&h.object("out", "jobs/rendezvous/output/model.tar.gz"));
    let get = |n: &str| file_text(&files, n);
    let a1: serde_json::Value = serde_json::from_str(&get("algo-1.json")).unwrap();
    let a2: serde_json::Value = serde_json::from_str(&get("algo-2.json")).unwrap();
    assert_eq!(a1["iface"], "eth0");
    assert_ne!(a1["me"], a2["me"], "distinct addresses");
    assert_eq!(a2["peer"], a1["me"]);
    assert_eq!(
        get("got.txt"),
        format!("hello from algo-2 from {}", a2["me"].as_str().unwrap())
    );
    let ns = String::from_utf8(
        std::process::Command::new("ip")
            .args(["netns", "list"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let id = trainyard::runner::network::job_id("rendezvous");
    assert!(
        !ns.contains(&format!("ty{id}-")),
        "namespaces left behind: {ns}"
    );
}
