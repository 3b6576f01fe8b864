import Foundation
import GatehouseCore
import Logging

/// What every connection shares: the directory, login protection, asset host keys, the
/// registry of online sessions and where events go. Immutable after start-up.
public struct GatewayContext: Sendable {
    public var config: GatehouseConfig
    public var directory: Directory
    public var throttle: LoginThrottle
    public var hostKeys: AssetHostKeys
    public var registry: SessionRegistry
    /// Where sessions, activities and recordings go.
    public var audit: AuditTrail
    public var logger: Logger
    /// Consumers of session events (recorder, live hub); empty means none yet.
    public var sinks: [SessionEventSink]

    public init(config: GatehouseConfig, registry: SessionRegistry, audit: AuditTrail, logger: Logger, sinks: [SessionEventSink] = []) {
        self.audit = audit
        self.config = config
        self.directory = Directory(config: config)
        self.throttle = LoginThrottle(maxFailures: config.security.maxFailures, window: config.security.failureWindow,
                                      lockout: config.security.lockout)
        self.hostKeys = AssetHostKeys(path: config.dataDir + "/asset_host_keys")
        self.registry = registry
        self.logger = logger
        self.sinks = sinks
    }
}
