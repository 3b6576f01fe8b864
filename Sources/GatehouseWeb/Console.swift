import Foundation
import HTTPTypes
import GatehouseCore
import Hummingbird
import NIOCore

/// The web console: a few static pages and scripts (shipped as resources of this module) over
/// the JSON API, and the terminal player installed beside the binary's data
/// (`scripts/install-web-assets`; GATEHOUSE_ASSETS overrides where).
enum Console {
    static let pages: [(path: String, file: String)] = [
        ("/", "records.html"),
        ("/login", "login.html"),
        ("/sessions/:id", "session.html"),
        ("/commands", "commands.html"),
    ]

    static let staticTypes: [String: String] = [
        "js": "text/javascript; charset=utf-8", "css": "text/css; charset=utf-8",
        "html": "text/html; charset=utf-8", "svg": "image/svg+xml",
    ]

    static var assetsDirectory: String {
        ProcessInfo.processInfo.environment["GATEHOUSE_ASSETS"] ?? "/usr/local/share/gatehouse"
    }

    static func register(on router: Router<WebContext>) {
        for page in pages {
            router.get(RouterPath(page.path)) { _, _ in try file(named: page.file) }
        }
        router.get("/favicon.ico") { _, _ in Response(status: .noContent) }
        router.get("/static/:name") { _, context in
            try file(named: try context.parameters.require("name"))
        }
        router.get("/vendor/asciinema-player/:name") { _, context in
            let name = try context.parameters.require("name")
            guard ["asciinema-player.min.js", "asciinema-player.css"].contains(name) else { throw APIError(.notFound, "no such file") }
            let path = assetsDirectory + "/asciinema-player/" + name
            guard let data = FileManager.default.contents(atPath: path) else {
                throw APIError(.notFound, "the terminal player is not installed (\(path)); run scripts/install-web-assets")
            }
            return response(data, name: name, cache: "public, max-age=86400")
        }
    }

    /// A console file from this module's resources; names are plain file names only.
    static func file(named name: String) throws -> Response {
        guard name.range(of: #"^[a-z0-9-]+\.(html|js|css|svg)$"#, options: .regularExpression) != nil,
              let url = Bundle.module.url(forResource: name, withExtension: nil, subdirectory: "Console"),
              let data = try? Data(contentsOf: url) else {
            throw APIError(.notFound, "no such page")
        }
        return response(data, name: name, cache: "no-cache")
    }

    static func response(_ data: Data, name: String, cache: String) -> Response {
        var headers = HTTPFields()
        headers[.contentType] = staticTypes[String(name.split(separator: ".").last ?? "")] ?? "application/octet-stream"
        headers[.cacheControl] = cache
        return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }
}

/// Headers every answer carries: no framing, no sniffing, scripts and styles from this origin
/// only (the player sets inline style attributes, hence 'unsafe-inline' for styles alone, and
/// runs its terminal emulator as WebAssembly, hence 'wasm-unsafe-eval', which allows no eval).
struct SecurityHeadersMiddleware: RouterMiddleware {
    typealias Context = WebContext

    static let policy = "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
        + "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"

    func handle(_ request: Request, context: WebContext, next: (Request, WebContext) async throws -> Response) async throws -> Response {
        var response: Response
        do {
            response = try await next(request, context)
        } catch let error as APIError {
            response = try error.response(from: request, context: context)
        }
        response.headers[.contentSecurityPolicy] = Self.policy
        response.headers[.xFrameOptions] = "DENY"
        response.headers[.xContentTypeOptions] = "nosniff"
        response.headers[.referrerPolicy] = "no-referrer"
        return response
    }
}

extension HTTPField.Name {
    static let xFrameOptions = Self("X-Frame-Options")!
    static let xContentTypeOptions = Self("X-Content-Type-Options")!
    static let referrerPolicy = Self("Referrer-Policy")!
    static let csrfToken = Self("X-CSRF-Token")!
}
