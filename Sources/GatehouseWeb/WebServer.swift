import Foundation
import GatehouseCore
import Hummingbird
import HummingbirdWebSocket
import Logging
import NIOCore

/// The HTTP side of a node: the REST API, the live WebSocket stream and `/metrics`.
/// Every route is in `APIRoutes.table`, which the OpenAPI document is checked against.
public struct WebServer: Sendable {
    public let address: HostPort
    let api: API
    let logger: Logger

    public init(address: HostPort, config: GatehouseConfig, registry: SessionRegistry, audit: AuditTrail,
                metrics: GatehouseMetrics, logger: Logger,
                issueRDPPassword: (@Sendable (String) throws -> (password: String, expires: Date))? = nil) {
        self.address = address
        let directory = Directory(config: config)
        api = API(access: SessionAccess(directory: directory, registry: registry, audit: audit), audit: audit,
                  throttle: LoginThrottle(maxFailures: config.security.maxFailures, window: config.security.failureWindow,
                                          lockout: config.security.lockout),
                  metrics: metrics, logger: logger, issueRDPPassword: issueRDPPassword)
        self.logger = logger
    }

    /// Serves until cancelled. `onListening` gets the bound address (port 0 picks one).
    public func run(onListening: @escaping @Sendable (String) -> Void = { _ in }) async throws {
        let router = Router(context: WebContext.self)
        router.middlewares.add(SecurityHeadersMiddleware())
        router.middlewares.add(ErrorMiddleware())
        for route in APIRoutes.table {
            let handler = route.handler
            let api = self.api
            router.on(RouterPath(route.routerPath), method: route.method) { request, context in
                try await handler(api, request, context)
            }
        }
        Console.register(on: router)
        // The live stream without a WebSocket upgrade: say so plainly (after the same checks).
        router.get(RouterPath(APIRoutes.livePath)) { [api] request, context -> Response in
            _ = try await api.authorizeLive(request, context)
            throw APIError(.badRequest, "this endpoint is a WebSocket: connect with an Upgrade: websocket request")
        }
        let wsRouter = Router(context: WebContext.self)
        let api = self.api
        wsRouter.ws(RouterPath(APIRoutes.livePath), shouldUpgrade: { request, context in
            let (_, session) = try await api.authorizeLive(request, context)
            // Browsers' players ask for a protocol by name; a terminal's stream is asciicast v2
            // (a desktop's is desktop records, with no protocol name: DesktopLiveSocket).
            let offered = request.headers[.secWebSocketProtocol]?.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) } ?? []
            let asciicast = session.desktop == nil && offered.contains("v2.asciicast")
            return .upgrade(asciicast ? [.secWebSocketProtocol: "v2.asciicast"] : [:])
        }, onUpgrade: { inbound, outbound, context in
            try await LiveSocket.serve(api: api, inbound: inbound, outbound: outbound, context: context)
        })
        let app = Application(
            router: router,
            server: .http1WebSocketUpgrade(webSocketRouter: wsRouter, configuration: .init(maxFrameSize: 1 << 16)),
            configuration: .init(address: .hostname(address.host, port: address.port), serverName: "gatehouse"),
            onServerRunning: { channel in
                onListening(channel.localAddress.map { "\($0.ipAddress ?? "?"):\($0.port ?? 0)" } ?? "?")
            },
            logger: logger
        )
        try await app.run()
    }
}

/// Per request: who is asking (set by `API.authenticate`) and the connection's channel (to
/// cut a stalled WebSocket loose).
public struct WebContext: RequestContext, WebSocketRequestContext {
    public var coreContext: CoreRequestContextStorage
    public let webSocket: WebSocketHandlerReference<Self>
    let channel: any Channel

    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        webSocket = .init()
        channel = source.channel
    }

    /// API bodies are small; anything bigger is refused before it is read.
    public var maxUploadSize: Int { 64 * 1024 }
}

/// An error the API answers with: its status and `{"error": "..."}`.
public struct APIError: HTTPResponseError {
    public let status: HTTPResponse.Status
    public let message: String
    public var headers: HTTPFields = [:]

    public init(_ status: HTTPResponse.Status, _ message: String, headers: HTTPFields = [:]) {
        self.status = status
        self.message = message
        self.headers = headers
    }

    public func response(from request: Request, context: some RequestContext) throws -> Response {
        JSON.response(["error": message], status: status, headers: headers)
    }
}

/// Turns every error, including the framework's own (404, 413, ...), into a JSON answer.
struct ErrorMiddleware: RouterMiddleware {
    typealias Context = WebContext

    func handle(_ request: Request, context: WebContext, next: (Request, WebContext) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let error as APIError {
            throw error
        } catch let error as HTTPError {
            let message: String
            switch error.status {
            case .notFound:
                let allowed = APIRoutes.methods(forPath: request.uri.path)
                if !allowed.isEmpty {
                    throw APIError(.methodNotAllowed, "\(request.method) is not allowed here; allowed: \(allowed.joined(separator: ", "))",
                                   headers: [.allow: allowed.joined(separator: ", ")])
                }
                message = "no such endpoint: \(request.method) \(request.uri.path)"
            case .contentTooLarge: message = "request body too large (at most \(context.maxUploadSize) bytes)"
            case .methodNotAllowed: message = "method not allowed"
            default: message = error.body ?? error.status.reasonPhrase
            }
            throw APIError(error.status, message)
        } catch is NIOTooManyBytesError {
            throw APIError(.contentTooLarge, "request body too large (at most \(context.maxUploadSize) bytes)")
        } catch let error as StoreError {
            throw APIError(.internalServerError, "\(error)")
        } catch is CancellationError {
            throw APIError(.serviceUnavailable, "the server is shutting down")
        } catch {
            context.logger.error("request failed", metadata: ["path": "\(request.uri.path)", "error": "\(error)"])
            throw APIError(.internalServerError, "internal error; the server log has the details")
        }
    }
}

/// JSON in and out: snake_case keys, ISO 8601 times.
enum JSON {
    static let encoder: JSONEncoder = {
        let e = JSONEncoder()
        e.keyEncodingStrategy = .convertToSnakeCase
        e.dateEncodingStrategy = .custom { date, encoder in
            var c = encoder.singleValueContainer()
            try c.encode(SessionAccess.time(date))
        }
        e.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return e
    }()

    static func response(_ value: some Encodable, status: HTTPResponse.Status = .ok, headers: HTTPFields = [:]) -> Response {
        let data = (try? encoder.encode(value)) ?? Data(#"{"error":"cannot encode the answer"}"#.utf8)
        var h = headers
        h[.contentType] = "application/json; charset=utf-8"
        h[.cacheControl] = "no-store"
        return Response(status: status, headers: h, body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }

    /// Reads a JSON object body, refusing malformed JSON, non-objects and keys not in `allowed`.
    static func object(_ request: inout Request, context: WebContext, allowed: Set<String>) async throws -> [String: Any] {
        let buffer = try await request.collectBody(upTo: context.maxUploadSize)
        guard buffer.readableBytes > 0 else { throw APIError(.badRequest, "a JSON object body is required") }
        let parsed: Any
        do {
            parsed = try JSONSerialization.jsonObject(with: Data(buffer.readableBytesView))
        } catch {
            throw APIError(.badRequest, "malformed JSON body")
        }
        guard let object = parsed as? [String: Any] else { throw APIError(.badRequest, "the body must be a JSON object") }
        let unknown = Set(object.keys).subtracting(allowed)
        guard unknown.isEmpty else {
            throw APIError(.badRequest, "unknown field(s): \(unknown.sorted().joined(separator: ", ")); allowed: \(allowed.sorted().joined(separator: ", "))")
        }
        return object
    }
}
