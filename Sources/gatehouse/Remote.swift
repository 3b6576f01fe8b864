import ArgumentParser
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import GatehouseCore
import HummingbirdWSClient
import Logging

/// How the admin commands reach a running server: its URL and an API token.
struct ServerOptions: ParsableArguments {
    @Option(help: "The server's HTTP address (or GATEHOUSE_SERVER).")
    var server: String = ProcessInfo.processInfo.environment["GATEHOUSE_SERVER"] ?? "http://127.0.0.1:8080"

    @Option(help: "An API token from `gatehouse token create` (prefer GATEHOUSE_TOKEN: options end up in shell history).")
    var token: String?

    func resolvedToken() throws -> String {
        guard let t = token ?? ProcessInfo.processInfo.environment["GATEHOUSE_TOKEN"], !t.isEmpty else {
            throw ValidationError("no API token: set GATEHOUSE_TOKEN or pass --token (see `gatehouse token create`)")
        }
        return t
    }

    func url(_ path: String) throws -> URL {
        guard let url = URL(string: server.trimmingCharacters(in: CharacterSet(charactersIn: "/")) + path),
              url.scheme == "http" || url.scheme == "https" else {
            throw ValidationError("--server must be an http:// or https:// URL, not \"\(server)\"")
        }
        return url
    }

    /// Sends a request; returns the decoded JSON object, or fails with the server's error text.
    func call(_ method: String, _ path: String) async throws -> [String: Any] {
        var request = URLRequest(url: try url(path))
        request.httpMethod = method
        request.setValue("Bearer \(try resolvedToken())", forHTTPHeaderField: "Authorization")
        request.timeoutInterval = 10
        let (data, response): (Data, URLResponse)
        do {
            (data, response) = try await URLSession.shared.data(for: request)
        } catch {
            throw fail("cannot reach \(server): \(error.localizedDescription)")
        }
        let object = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] ?? [:]
        let status = (response as? HTTPURLResponse)?.statusCode ?? 0
        guard (200..<300).contains(status) else {
            throw fail("\(status): \(object["error"] as? String ?? String(decoding: data.prefix(200), as: UTF8.self))")
        }
        return object
    }
}

extension Sessions {
    struct Terminate: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "End an online session now (admins). The user is told who ended it.")
        @OptionGroup var server: ServerOptions
        @Argument(help: "The session's id or short id.") var id: String

        func run() throws { try blocking { try await terminate() } }

        func terminate() async throws {
            let answer = try await server.call("POST", "/api/v1/sessions/\(pathSegment(id))/terminate")
            print("terminated session \(answer["id"] as? String ?? id)")
        }
    }

    struct Watch: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Watch an online session in this terminal (auditors and admins), read-only. Ctrl-C leaves.")
        @OptionGroup var server: ServerOptions
        @Argument(help: "The session's id or short id.") var id: String

        func run() throws { try blocking { try await watch() } }

        func watch() async throws {
            let base = try server.url("/api/v1/sessions/\(pathSegment(id))/live")
            var components = URLComponents(url: base, resolvingAgainstBaseURL: false)!
            components.scheme = components.scheme == "https" ? "wss" : "ws"
            var configuration = WebSocketClientConfiguration()
            configuration.additionalHeaders[.authorization] = "Bearer \(try server.resolvedToken())"
            configuration.maxFrameSize = 1 << 22
            var logger = Logger(label: "gatehouse.watch")
            logger.logLevel = .error
            let out = FileHandle.standardOutput
            let close = try await WebSocketClient.connect(url: components.string!, configuration: configuration, logger: logger) { inbound, _, _ in
                var first = true
                for try await message in inbound.messages(maxSize: 1 << 24) {
                    guard case .text(let text) = message else { continue }
                    for line in text.split(separator: "\n") {
                        if first { first = false; continue } // the asciicast header
                        guard let event = AsciicastReader.parseEvent(Array(line.utf8)) else { continue }
                        switch event.code {
                        case "o": out.write(Data(event.data))
                        case "m": out.write(Data("\r\n[gatehouse: \(String(decoding: event.data, as: UTF8.self))]\r\n".utf8))
                        default: break
                        }
                    }
                }
            }
            if let close {
                switch close.closeCode {
                case .normalClosure: if let reason = close.reason { out.write(Data("\r\n[gatehouse: \(reason)]".utf8)) }
                default: throw fail("the server closed the stream: \(close.reason ?? "\(close.closeCode)")")
                }
            }
            out.write(Data("\r\n".utf8))
        }
    }
}

struct Token: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Manage API tokens.", subcommands: [Create.self])

    struct Create: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create an API token for a user; the token is printed once, on the last line.",
            discussion: "Send it as `Authorization: Bearer TOKEN`. Only its SHA-256 is stored.")
        @OptionGroup var options: ConfigOption
        @Option(help: "The Gatehouse user the token acts as.") var user: String
        @Option(help: "Days until it expires (default: never).") var expires: Int?
        @Option(help: "A note on what the token is for.") var label: String?

        func run() throws {
            let config = try options.load()
            guard let account = config.users.first(where: { $0.name == user }) else {
                throw fail("no user \"\(user)\" in \(options.config)")
            }
            if let expires, !(1...3650).contains(expires) { throw ValidationError("--expires: 1 to 3650 days") }
            let audit = try openAudit(options)
            let token = Secret.generate(prefix: "ght_")
            let now = Date()
            try audit.store.addCredential(secret: token, CredentialRecord(kind: .token, user: user, created: now,
                                                                           expires: expires.map { now.addingTimeInterval(Double($0) * 86400) },
                                                                           label: label))
            print("token for \(user) (role \(account.role.rawValue)), \(expires.map { "expires in \($0) days" } ?? "does not expire"):")
            print(token)
        }
    }
}

/// Runs async work from a command's synchronous `run`. The root command stays synchronous so
/// that `serve` keeps the real main thread for Dispatch's main queue.
func blocking(_ body: @escaping @Sendable () async throws -> Void) throws {
    let done = DispatchSemaphore(value: 0)
    let result = ResultBox()
    Task {
        do { try await body() } catch { result.error = error }
        done.signal()
    }
    done.wait()
    if let error = result.error { throw error }
}

final class ResultBox: @unchecked Sendable {
    var error: Error?
}

/// A session id as one URL path segment.
func pathSegment(_ id: String) -> String {
    var allowed = CharacterSet.alphanumerics
    allowed.insert(charactersIn: "-._~")
    return id.addingPercentEncoding(withAllowedCharacters: allowed) ?? id
}
