import Metrics

/// What the node counts, through swift-metrics (the executable picks the backend; the HTTP
/// server exports it for Prometheus). Gauges that describe the present (sessions online,
/// recorder queues) are read at scrape time instead.
public enum GatehouseCounters {
    public static func sessionStarted(protocol name: String) {
        Counter(label: "gatehouse_sessions_started_total", dimensions: [("protocol", name)]).increment()
    }

    public static func bytesRelayed(toAsset: Int, toUser: Int, protocol name: String) {
        Counter(label: "gatehouse_bytes_relayed_total", dimensions: [("direction", "to_asset"), ("protocol", name)]).increment(by: toAsset)
        Counter(label: "gatehouse_bytes_relayed_total", dimensions: [("direction", "to_user"), ("protocol", name)]).increment(by: toUser)
    }

    public static func loginFailed(via: String) {
        Counter(label: "gatehouse_failed_logins_total", dimensions: [("via", via)]).increment()
    }
}
