import ArgumentParser
import Dispatch
import Foundation
import GatehouseCore
import GatehouseRDP
import GatehouseSSH
import GatehouseWeb
import Logging

struct ConfigOption: ParsableArguments {
    @Option(name: .long, help: "Path of the configuration file.")
    var config: String = "config/gatehouse.yaml"

    /// Loads and checks the config; on problems prints each one and exits non-zero.
    func load() throws -> GatehouseConfig {
        do {
            return try ConfigLoader().load(path: config)
        } catch {
            for problem in error.problems { FileHandle.standardError.write(Data("\(problem)\n".utf8)) }
            FileHandle.standardError.write(Data("gatehouse: \(error.problems.count) problem(s) in \(config)\n".utf8))
            throw ExitCode(2)
        }
    }
}

struct Serve: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run the gateway.")

    @OptionGroup var options: ConfigOption

    func run() throws {
        let config = try options.load()
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = ProcessInfo.processInfo.environment["GATEHOUSE_LOG_LEVEL"].flatMap(Logger.Level.init(rawValue:)) ?? .info
            return handler
        }
        let logger = Logger(label: "gatehouse")
        try FileManager.default.createDirectory(atPath: config.dataDir, withIntermediateDirectories: true,
                                                attributes: [.posixPermissions: 0o700])
        let registry = SessionRegistry()
        let audit: AuditTrail
        do {
            audit = try AuditTrail(dataDirectory: config.dataDir, policy: config.recording, logger: logger)
            let interrupted = try audit.recoverInterruptedSessions()
            if interrupted > 0 { logger.warning("marked \(interrupted) session(s) left online by the last run as interrupted") }
        } catch {
            logger.critical("cannot open the audit trail: \(error)")
            throw ExitCode(1)
        }
        let retention = DispatchSource.makeTimerSource(queue: .global(qos: .utility))
        retention.schedule(deadline: .now() + 5, repeating: 86400)
        retention.setEventHandler {
            do {
                let n = try audit.sweepRetention()
                if n > 0 { logger.info("retention: deleted \(n) recording(s)") }
            } catch { logger.error("retention sweep failed: \(error)") }
        }
        retention.activate()
        let metrics = GatehouseMetrics.bootstrap()
        let context = GatewayContext(config: config, registry: registry, audit: audit, logger: logger)
        let gateway = SSHGateway(context: context)
        do {
            try gateway.start()
        } catch {
            logger.critical("cannot start: \(error)")
            throw ExitCode(1)
        }
        logger.info("listening on ssh \(gateway.boundAddress.map(\.description) ?? "?")",
                    metadata: ["users": "\(config.users.count)", "assets": "\(config.assets.count)", "data_dir": "\(config.dataDir)"])

        var rdp: RDPGateway?
        if config.listen.rdp != nil {
            let gateway = RDPGateway(.init(config: config, registry: registry, audit: audit, throttle: context.throttle,
                                           logger: Logger(label: "gatehouse.rdp")))
            do {
                try gateway.start()
            } catch {
                logger.critical("cannot start RDP: \(error)")
                throw ExitCode(1)
            }
            rdp = gateway
        }

        if let web = config.listen.web {
            var issue: (@Sendable (String) throws -> (password: String, expires: Date))?
            if rdp != nil {
                let store = audit.store
                issue = { @Sendable user in
                    let issued = try RDPPasswords.issue(user: user, store: store)
                    return (password: issued.password, expires: issued.expires)
                }
            }
            let server = WebServer(address: web, config: config, registry: registry, audit: audit, metrics: metrics,
                                   logger: Logger(label: "gatehouse.web"), issueRDPPassword: issue)
            Task {
                do {
                    try await server.run { address in logger.info("listening on web \(address)") }
                } catch {
                    logger.critical("cannot serve the web API on \(web): \(error)")
                    Foundation.exit(1)
                }
            }
        }

        signal(SIGPIPE, SIG_IGN)
        var signalSources: [DispatchSourceSignal] = []
        for sig in [SIGTERM, SIGINT] {
            signal(sig, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
            source.setEventHandler {
                logger.info("shutting down: closing \(registry.count) session(s)")
                rdp?.stop()
                gateway.drain(message: "the gateway is shutting down for maintenance; please reconnect shortly")
                RDPGateway.drain(registry)
                audit.waitForWrites()
                logger.info("stopped")
                Foundation.exit(0)
            }
            source.activate()
            signalSources.append(source)
        }
        withExtendedLifetime((signalSources, retention, rdp)) { dispatchMain() }
    }
}

struct CheckConfig: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Check a configuration file and print every problem found.")

    @OptionGroup var options: ConfigOption

    func run() throws {
        let config = try options.load()
        print("\(options.config): OK (\(config.users.count) users, \(config.assets.count) assets, \(config.grants.count) grants)")
    }
}

struct HashPassword: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print an argon2id hash for a user's password_hash.",
        discussion: "Reads the password from standard input unless --password is given (which leaves it in shell history).")

    @Option(help: "The password (prefer standard input).")
    var password: String?

    func run() throws {
        var secret = password
        if secret == nil {
            secret = readLine(strippingNewline: true)
        }
        guard let secret, !secret.isEmpty else {
            FileHandle.standardError.write(Data("gatehouse: no password given on standard input\n".utf8))
            throw ExitCode(2)
        }
        print(PasswordHasher.hash(password: secret))
    }
}
