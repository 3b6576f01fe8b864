import CoreMetrics
import GatehouseCore
import Prometheus

/// The node's metrics in Prometheus' text format. Counters come through swift-metrics
/// (`GatehouseCounters`); gauges of the present are read from the registry at scrape time.
public final class GatehouseMetrics: Sendable {
    let prometheus: PrometheusCollectorRegistry
    private let online: Prometheus.Gauge
    private let watchers: Prometheus.Gauge
    private let queued: Prometheus.Gauge
    private let lag: Prometheus.Gauge

    init(prometheus: PrometheusCollectorRegistry) {
        self.prometheus = prometheus
        online = prometheus.makeGauge(name: "gatehouse_sessions_online", help: "Sessions being relayed now")
        watchers = prometheus.makeGauge(name: "gatehouse_watchers", help: "People watching or joined to online sessions")
        queued = prometheus.makeGauge(name: "gatehouse_recorder_queue_bytes", help: "Recording bytes waiting for the disk")
        lag = prometheus.makeGauge(name: "gatehouse_recorder_lag_seconds", help: "How long the slowest recording has been waiting for the disk")
    }

    /// Makes Prometheus the process's swift-metrics backend. Once per process.
    public static func bootstrap() -> GatehouseMetrics {
        let registry = PrometheusCollectorRegistry()
        MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))
        return GatehouseMetrics(prometheus: registry)
    }

    /// Metrics that go nowhere but still answer `/metrics` (tests, embedding).
    public static func unbootstrapped() -> GatehouseMetrics { GatehouseMetrics(prometheus: PrometheusCollectorRegistry()) }

    func exposition(registry: SessionRegistry) -> [UInt8] {
        let sessions = registry.all
        online.set(Double(sessions.count))
        watchers.set(Double(sessions.reduce(0) { $0 + ($1.live?.watcherNames.count ?? $1.desktop?.watcherCount ?? 0) }))
        let queues = sessions.compactMap(\.recorderQueue)
        queued.set(Double(queues.reduce(0) { $0 + $1.bytes }))
        lag.set(queues.map(\.lag).max() ?? 0)
        return prometheus.emitToBuffer()
    }
}
