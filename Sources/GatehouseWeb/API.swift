import Foundation
import GatehouseCore
import Hummingbird
import Logging
import NIOCore

/// One route of the API. `path` is written as in the OpenAPI document (`{id}`).
struct APIRoute: Sendable {
    let method: HTTPRequest.Method
    let path: String
    let handler: @Sendable (API, Request, WebContext) async throws -> Response

    var routerPath: String { path.replacingOccurrences(of: "{", with: ":").replacingOccurrences(of: "}", with: "") }
}

public enum APIRoutes {
    static let livePath = "/api/v1/sessions/{id}/live".replacingOccurrences(of: "{id}", with: ":id")

    /// Every HTTP route the server answers (the live WebSocket is `GET /api/v1/sessions/{id}/live`).
    static let table: [APIRoute] = [
        APIRoute(method: .post, path: "/api/v1/login") { try await $0.login($1, $2) },
        APIRoute(method: .post, path: "/api/v1/logout") { try await $0.logout($1, $2) },
        APIRoute(method: .get, path: "/api/v1/me") { try await $0.me($1, $2) },
        APIRoute(method: .get, path: "/api/v1/sessions") { try await $0.listSessions($1, $2) },
        APIRoute(method: .get, path: "/api/v1/sessions/{id}") { try await $0.showSession($1, $2) },
        APIRoute(method: .get, path: "/api/v1/sessions/{id}/activities") { try await $0.activities($1, $2) },
        APIRoute(method: .get, path: "/api/v1/sessions/{id}/commands") { try await $0.commands($1, $2) },
        APIRoute(method: .get, path: "/api/v1/sessions/{id}/transfers") { try await $0.transfers($1, $2) },
        APIRoute(method: .get, path: "/api/v1/sessions/{id}/collaborations") { try await $0.collaborations($1, $2) },
        APIRoute(method: .get, path: "/api/v1/sessions/{id}/recording") { try await $0.recording($1, $2) },
        APIRoute(method: .get, path: "/api/v1/sessions/{id}/recording/segments") { try await $0.segmentIndex($1, $2) },
        APIRoute(method: .get, path: "/api/v1/sessions/{id}/recording/segments/{n}") { try await $0.segment($1, $2) },
        APIRoute(method: .post, path: "/api/v1/sessions/{id}/terminate") { try await $0.terminate($1, $2) },
        APIRoute(method: .post, path: "/api/v1/sessions/{id}/shares") { try await $0.share($1, $2) },
        APIRoute(method: .get, path: "/api/v1/commands") { try await $0.searchCommands($1, $2) },
        APIRoute(method: .post, path: "/api/v1/rdp-password") { try await $0.rdpPassword($1, $2) },
        APIRoute(method: .get, path: "/metrics") { try await $0.metricsText($1, $2) },
    ]

    /// The methods the API answers on a concrete path (for 405 answers).
    static func methods(forPath path: String) -> [String] {
        let parts = path.split(separator: "/", omittingEmptySubsequences: false)
        return all.filter { route in
            let template = route.path.split(separator: "/", omittingEmptySubsequences: false)
            return template.count == parts.count && zip(template, parts).allSatisfy { t, p in t.hasPrefix("{") ? !p.isEmpty : t == p }
        }.map { $0.method.uppercased() }
    }

    /// Method and path of every route, the live WebSocket included (for the OpenAPI check).
    public static var all: [(method: String, path: String)] {
        table.map { ($0.method.rawValue.lowercased(), $0.path) } + [("get", "/api/v1/sessions/{id}/live")]
    }
}

/// The handlers. Every one starts with who is asking and what they may see.
struct API: Sendable {
    let access: SessionAccess
    let audit: AuditTrail
    let throttle: LoginThrottle
    let metrics: GatehouseMetrics
    let logger: Logger
    /// Issues a one-time RDP password for a user; nil when the gateway takes no RDP.
    let issueRDPPassword: (@Sendable (String) throws -> (password: String, expires: Date))?
    /// Who watches which online desktop session over the live WebSocket.
    let desktopWatchers = DesktopWatcherNames()

    static let cookieName = "gatehouse_session"
    static let webLoginLifetime: TimeInterval = 12 * 3600

    // MARK: Who is asking

    struct Caller {
        var user: String
        var role: GatehouseConfig.Role
    }

    /// The CSRF token of a web login: derived from its secret, so nothing more is stored.
    static func csrfToken(_ cookie: String) -> String { Secret.hash("csrf:" + cookie) }

    static func checkSameOrigin(_ request: Request) throws {
        guard let origin = request.headers[.origin] else { return }
        let host = request.head.authority ?? ""
        guard origin == "http://\(host)" || origin == "https://\(host)" else {
            throw APIError(.forbidden, "cross-origin request refused")
        }
    }

    func authenticate(_ request: Request) throws -> Caller {
        var secret: String?
        if let header = request.headers[.authorization] {
            guard header.lowercased().hasPrefix("bearer ") else { throw APIError(.unauthorized, "use Authorization: Bearer TOKEN") }
            secret = String(header.dropFirst(7)).trimmingCharacters(in: .whitespaces)
        } else if let cookie = request.cookies[Self.cookieName]?.value {
            // A browser sends the cookie wherever the request comes from: only this origin's
            // pages may use it, and changes need the page's CSRF token as well.
            try Self.checkSameOrigin(request)
            if request.method != .get, request.method != .head, request.headers[.csrfToken] != Self.csrfToken(cookie) {
                throw APIError(.forbidden, "missing or wrong X-CSRF-Token header (reload the page)")
            }
            secret = cookie
        }
        guard let secret, !secret.isEmpty, secret.count < 256 else { throw APIError(.unauthorized, "log in first (POST /api/v1/login) or send an API token") }
        guard let credential = try audit.store.credential(secret: secret, now: Date()) else {
            throw APIError(.unauthorized, "the token or login has expired or is unknown")
        }
        // The config decides: a user removed from it loses access at once, whatever they hold.
        guard let role = access.role(of: credential.user) else { throw APIError(.unauthorized, "user \(credential.user) no longer exists") }
        return Caller(user: credential.user, role: role)
    }

    /// The session `id` names, if the caller may see it. 404 for both "none" and "not yours":
    /// a user cannot probe for other people's session ids.
    func visibleSession(_ request: Request, _ context: WebContext, caller: Caller) throws -> SessionRecord {
        let id = try context.parameters.require("id")
        let record: SessionRecord
        do {
            record = try audit.store.session(id: id)
        } catch StoreError.notFound {
            throw APIError(.notFound, "no session \"\(id)\"")
        } catch StoreError.ambiguous(_, let matches) where caller.role != .user {
            throw APIError(.badRequest, "\"\(id)\" matches several sessions: \(matches.joined(separator: ", "))")
        } catch StoreError.ambiguous {
            throw APIError(.notFound, "no session \"\(id)\"")
        }
        guard access.maySee(caller.user, sessionOwner: record.user) else { throw APIError(.notFound, "no session \"\(id)\"") }
        return record
    }

    // MARK: Login

    func login(_ request: Request, _ context: WebContext) async throws -> Response {
        try Self.checkSameOrigin(request)
        var request = request
        let body = try await JSON.object(&request, context: context, allowed: ["username", "password"])
        guard let username = body["username"] as? String, let password = body["password"] as? String else {
            throw APIError(.badRequest, "username and password (strings) are required")
        }
        let address = context.channel.remoteAddress?.ipAddress ?? "?"
        guard !throttle.isLocked(user: username, address: address) else {
            throw APIError(.tooManyRequests, "too many failed logins; try again later")
        }
        guard let user = access.directory.user(named: username), let hash = user.passwordHash,
              PasswordHasher.verify(password: password, hash: hash) else {
            GatehouseCounters.loginFailed(via: "web")
            _ = throttle.recordFailure(user: username, address: address)
            logger.warning("web login failed", metadata: ["user": "\(username)", "from": "\(address)"])
            throw APIError(.unauthorized, "wrong username or password")
        }
        throttle.recordSuccess(user: username, address: address)
        let secret = Secret.generate(prefix: "ghw_")
        let now = Date()
        try audit.store.addCredential(secret: secret, CredentialRecord(kind: .web, user: username, created: now,
                                                                        expires: now.addingTimeInterval(Self.webLoginLifetime), label: address))
        var headers = HTTPFields()
        headers[.setCookie] = "\(Self.cookieName)=\(secret); Path=/; HttpOnly; SameSite=Strict; Max-Age=\(Int(Self.webLoginLifetime))"
        return JSON.response(["user": username, "role": user.role.rawValue, "csrf_token": Self.csrfToken(secret)], headers: headers)
    }

    func logout(_ request: Request, _ context: WebContext) async throws -> Response {
        _ = try authenticate(request)
        guard request.headers[.authorization] == nil, let cookie = request.cookies[Self.cookieName]?.value else {
            throw APIError(.badRequest, "logout ends a web login (the session cookie); API tokens stay valid until they expire")
        }
        try audit.store.removeCredential(secret: cookie)
        var headers = HTTPFields()
        headers[.setCookie] = "\(Self.cookieName)=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"
        return JSON.response(["logged_out": true], headers: headers)
    }

    func me(_ request: Request, _ context: WebContext) async throws -> Response {
        let caller = try authenticate(request)
        var answer = ["user": caller.user, "role": caller.role.rawValue]
        if request.headers[.authorization] == nil, let cookie = request.cookies[Self.cookieName]?.value { answer["csrf_token"] = Self.csrfToken(cookie) }
        return JSON.response(answer)
    }

    // MARK: RDP

    /// A one-time RDP password for the caller (for NLA clients such as mstsc): shown once,
    /// good for one session within ten minutes.
    func rdpPassword(_ request: Request, _ context: WebContext) async throws -> Response {
        let caller = try authenticate(request)
        guard let issue = issueRDPPassword else { throw APIError(.notFound, "this gateway takes no RDP sessions (listen.rdp)") }
        let issued = try issue(caller.user)
        logger.info("one-time RDP password issued", metadata: ["user": "\(caller.user)"])
        var headers = HTTPFields()
        headers[.cacheControl] = "no-store"
        return JSON.response(RDPPasswordJSON(password: issued.password, expires: issued.expires, username: "\(caller.user)#ASSET"),
                             headers: headers)
    }

    // MARK: Sessions

    func listSessions(_ request: Request, _ context: WebContext) async throws -> Response {
        let caller = try authenticate(request)
        let q = request.uri.queryParameters
        let known: Set<String> = ["state", "user", "asset", "protocol", "since", "until", "page", "per_page", "sort", "order", "q"]
        if let unknown = q.map({ String($0.key) }).first(where: { !known.contains($0) }) {
            throw APIError(.badRequest, "unknown query parameter \"\(unknown)\"; known: \(known.sorted().joined(separator: ", "))")
        }
        var filter = SessionFilter()
        switch q["state"].map(String.init) {
        case nil, "": break
        case "online": filter.states = [.online]
        case "finished": filter.states = SessionState.allCases.filter { $0 != .online }
        case let s?:
            guard let state = SessionState(rawValue: s) else { throw APIError(.badRequest, "state must be online, finished or one of \(SessionState.allCases.map(\.rawValue).joined(separator: ", "))") }
            filter.states = [state]
        }
        filter.user = q["user"].map(String.init).flatMap { $0.isEmpty ? nil : $0 }
        filter.asset = q["asset"].map(String.init).flatMap { $0.isEmpty ? nil : $0 }
        filter.protocolName = q["protocol"].map(String.init).flatMap { $0.isEmpty ? nil : $0 }
        filter.since = try q["since"].flatMap { $0.isEmpty ? nil : try Self.date(String($0), "since") }
        filter.until = try q["until"].flatMap { $0.isEmpty ? nil : try Self.date(String($0), "until") }
        let page = try Self.int(q["page"], "page", default: 1, range: 1...1_000_000)
        let perPage = try Self.int(q["per_page"], "per_page", default: 50, range: 1...500)
        if let sort = q["sort"].map(String.init), !sort.isEmpty {
            guard let key = SessionFilter.Sort(rawValue: sort) else {
                throw APIError(.badRequest, "sort must be one of \(SessionFilter.Sort.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            filter.sort = key
        }
        switch q["order"].map(String.init) {
        case nil, "", "desc": filter.ascending = false
        case "asc": filter.ascending = true
        default: throw APIError(.badRequest, "order must be asc or desc")
        }
        if let text = q["q"].map(String.init), !text.isEmpty {
            guard text.count <= 200 else { throw APIError(.badRequest, "q: at most 200 characters") }
            filter.commandText = text
        }
        if caller.role == .user {
            if let asked = filter.user, asked != caller.user { throw APIError(.forbidden, "you may only list your own sessions") }
            filter.user = caller.user
        }
        let total = try audit.store.count(matching: filter)
        filter.limit = perPage
        filter.offset = (page - 1) * perPage
        let sessions = try audit.store.sessions(matching: filter).map(sessionJSON)
        return JSON.response(SessionPage(sessions: sessions, total: total, page: page, perPage: perPage))
    }

    func showSession(_ request: Request, _ context: WebContext) async throws -> Response {
        let caller = try authenticate(request)
        let record = try visibleSession(request, context, caller: caller)
        return JSON.response(sessionJSON(record))
    }

    /// A session as the API shows it, with who is watching if it is online.
    func sessionJSON(_ record: SessionRecord) -> SessionJSON {
        let online = access.registry.session(record.id)
        let desktopWatchers = online?.desktop.map { _ in self.desktopWatchers.names(session: record.id) }
        return SessionJSON(record, live: online?.live, desktopWatchers: desktopWatchers)
    }

    func activities(_ request: Request, _ context: WebContext) async throws -> Response {
        let record = try visibleSession(request, context, caller: try authenticate(request))
        return JSON.response(["activities": try audit.store.activities(sessionID: record.id)])
    }

    func commands(_ request: Request, _ context: WebContext) async throws -> Response {
        let record = try visibleSession(request, context, caller: try authenticate(request))
        return JSON.response(["commands": try audit.store.commands(sessionID: record.id).map(CommandJSON.init)])
    }

    func transfers(_ request: Request, _ context: WebContext) async throws -> Response {
        let record = try visibleSession(request, context, caller: try authenticate(request))
        return JSON.response(["transfers": try audit.store.transfers(sessionID: record.id)])
    }

    func collaborations(_ request: Request, _ context: WebContext) async throws -> Response {
        let record = try visibleSession(request, context, caller: try authenticate(request))
        return JSON.response(["collaborations": try audit.store.collaborations(sessionID: record.id)])
    }

    /// The asciicast, uncompressed, streamed from disk. A live session's recording is served
    /// up to its last whole event. A desktop session's `.gdr` recording likewise, up to its
    /// last whole record.
    func recording(_ request: Request, _ context: WebContext) async throws -> Response {
        let record = try visibleSession(request, context, caller: try authenticate(request))
        guard let relative = record.recording else { throw APIError(.notFound, "session \(record.shortID) has no recording") }
        let path = audit.recordingPath(relative)
        guard FileManager.default.isReadableFile(atPath: path) else { throw APIError(.notFound, "the recording of session \(record.shortID) is missing") }
        if SessionRecord.isDesktopRecording(relative) {
            return DesktopRecordingFile.response(path: path, compressed: relative.hasSuffix(".gz"), sessionID: record.id,
                                                 wholeRecordsOnly: record.state == .online)
        }
        var headers = HTTPFields()
        headers[.contentType] = "application/x-asciicast"
        headers[.contentDisposition] = "attachment; filename=\"\(record.id).cast\""
        headers[.cacheControl] = "no-store"
        let compressed = relative.hasSuffix(".gz")
        let body = ResponseBody { writer in
            let stream = try RecordingStream(path: path, compressed: compressed, wholeLinesOnly: record.state == .online)
            while let chunk = try stream.next() {
                try await writer.write(ByteBuffer(bytes: chunk))
            }
            try await writer.finish(nil)
        }
        return Response(status: .ok, headers: headers, body: body)
    }

    /// Commands across the sessions the caller may see, newest first.
    func searchCommands(_ request: Request, _ context: WebContext) async throws -> Response {
        let caller = try authenticate(request)
        let q = request.uri.queryParameters
        let known: Set<String> = ["q", "user", "asset", "risk", "since", "until", "page", "per_page"]
        if let unknown = q.map({ String($0.key) }).first(where: { !known.contains($0) }) {
            throw APIError(.badRequest, "unknown query parameter \"\(unknown)\"; known: \(known.sorted().joined(separator: ", "))")
        }
        var filter = CommandFilter()
        filter.text = q["q"].map(String.init).flatMap { $0.isEmpty ? nil : $0 }
        filter.user = q["user"].map(String.init).flatMap { $0.isEmpty ? nil : $0 }
        filter.asset = q["asset"].map(String.init).flatMap { $0.isEmpty ? nil : $0 }
        if let risk = q["risk"].map(String.init), !risk.isEmpty {
            guard let r = CommandRisk(rawValue: risk) else { throw APIError(.badRequest, "risk must be one of \(CommandRisk.allCases.map(\.rawValue).joined(separator: ", "))") }
            filter.risk = r
        }
        filter.since = try q["since"].flatMap { $0.isEmpty ? nil : try Self.date(String($0), "since") }
        filter.until = try q["until"].flatMap { $0.isEmpty ? nil : try Self.date(String($0), "until") }
        let page = try Self.int(q["page"], "page", default: 1, range: 1...1_000_000)
        let perPage = try Self.int(q["per_page"], "per_page", default: 50, range: 1...500)
        if caller.role == .user {
            if let asked = filter.user, asked != caller.user { throw APIError(.forbidden, "you may only search your own commands") }
            filter.user = caller.user
        }
        filter.limit = perPage
        filter.offset = (page - 1) * perPage
        let matches = try audit.store.searchCommands(filter).map(CommandMatchJSON.init)
        return JSON.response(CommandPage(commands: matches, page: page, perPage: perPage))
    }

    /// The recording in asciinema-player's segmented form (see `SegmentedRecording`).
    private func segmented(_ request: Request, _ context: WebContext) throws -> (SessionRecord, SegmentedRecording) {
        let record = try visibleSession(request, context, caller: try authenticate(request))
        guard let relative = record.recording else { throw APIError(.notFound, "session \(record.shortID) has no recording") }
        guard !record.isDesktop, !SessionRecord.isDesktopRecording(relative) else {
            throw APIError(.conflict, "desktop recordings are not segmented: GET /api/v1/sessions/\(record.id)/recording serves the whole .gdr file")
        }
        var idle: Double?
        if let text = request.uri.queryParameters["idle"], !text.isEmpty {
            guard let limit = Double(text), (0.5...60).contains(limit) else { throw APIError(.badRequest, "idle must be seconds from 0.5 to 60") }
            idle = limit
        }
        do {
            return (record, try SegmentedRecording(path: audit.recordingPath(relative), idleLimit: idle))
        } catch {
            logger.error("cannot read recording", metadata: ["session": "\(record.shortID)", "error": "\(error)"])
            throw APIError(.unprocessableContent, "the recording of session \(record.shortID) cannot be read: \(error)")
        }
    }

    func segmentIndex(_ request: Request, _ context: WebContext) async throws -> Response {
        let (record, recording) = try segmented(request, context)
        let query = request.uri.queryParameters["idle"].map { "?idle=\($0)" } ?? ""
        return Self.jsonBytes(recording.index { "/api/v1/sessions/\(record.id)/recording/segments/\($0)\(query)" })
    }

    func segment(_ request: Request, _ context: WebContext) async throws -> Response {
        let (_, recording) = try segmented(request, context)
        let n = try context.parameters.require("n", as: Int.self)
        guard recording.starts.indices.contains(n) else { throw APIError(.notFound, "no segment \(n)") }
        return Self.jsonBytes(try recording.segment(n))
    }

    static func jsonBytes(_ bytes: [UInt8]) -> Response {
        var headers = HTTPFields()
        headers[.contentType] = "application/json; charset=utf-8"
        headers[.cacheControl] = "no-store"
        return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: bytes)))
    }

    // MARK: Actions

    func terminate(_ request: Request, _ context: WebContext) async throws -> Response {
        let caller = try authenticate(request)
        let record = try visibleSession(request, context, caller: caller)
        guard access.mayTerminate(caller.user) else { throw APIError(.forbidden, "only admins may terminate sessions") }
        guard record.state == .online, let session = access.registry.session(record.id) else {
            throw APIError(.conflict, "session \(record.shortID) is not online (\(record.state.rawValue))")
        }
        logger.notice("terminating session", metadata: ["session": "\(record.shortID)", "by": "\(caller.user)"])
        session.terminate(message: "an administrator (\(caller.user)) ended this session", by: caller.user)
        // Answer once the session is gone, so the caller sees its final state.
        for _ in 0..<40 where access.registry.session(record.id) != nil {
            try await Task.sleep(for: .milliseconds(25))
        }
        return JSON.response(TerminateJSON(terminated: true, id: record.id, terminatedBy: caller.user))
    }

    func share(_ request: Request, _ context: WebContext) async throws -> Response {
        let caller = try authenticate(request)
        let record = try visibleSession(request, context, caller: caller)
        var request = request
        let body = try await JSON.object(&request, context: context, allowed: ["mode", "expires_in", "users"])
        guard let modeText = body["mode"] as? String, let mode = ShareRecord.Mode(rawValue: modeText) else {
            throw APIError(.badRequest, "mode must be \"read\" or \"write\"")
        }
        var validFor: TimeInterval = 3600
        if let raw = body["expires_in"] {
            guard let seconds = raw as? Int, (60...7 * 86400).contains(seconds) else {
                throw APIError(.badRequest, "expires_in must be a whole number of seconds from 60 to 604800")
            }
            validFor = TimeInterval(seconds)
        }
        var users: [String] = []
        if let raw = body["users"] {
            guard let list = raw as? [String], list.count <= 100 else { throw APIError(.badRequest, "users must be a list of user names") }
            for name in list where access.directory.user(named: name) == nil {
                throw APIError(.badRequest, "no user \"\(CommandExtractor.printable(name))\"")
            }
            users = list
        }
        do {
            let (code, share) = try access.share(sessionID: record.id, mode: mode, validFor: validFor, users: users, by: caller.user)
            return JSON.response(ShareJSON(code: code, sessionId: record.id, mode: mode.rawValue, expires: share.expires, users: users,
                                           join: "ssh -t USER@join:\(code)@GATEWAY"), status: .created)
        } catch let refusal as SessionAccess.Refusal {
            switch refusal {
            case .notAllowed: throw APIError(.forbidden, "\(refusal)")
            default: throw APIError(.conflict, "session \(record.shortID) is not online")
            }
        }
    }

    func metricsText(_ request: Request, _ context: WebContext) async throws -> Response {
        var headers = HTTPFields()
        headers[.contentType] = "text/plain; version=0.0.4; charset=utf-8"
        return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: metrics.exposition(registry: access.registry))))
    }

    /// Who may open the live stream of a session: auditors and admins. The session must have
    /// a terminal or a desktop to show.
    func authorizeLive(_ request: Request, _ context: WebContext) async throws -> (Caller, ManagedSession) {
        let caller = try authenticate(request)
        let record = try visibleSession(request, context, caller: caller)
        guard access.mayWatch(caller.user) else { throw APIError(.forbidden, "only auditors and admins may watch sessions") }
        guard let session = access.registry.session(record.id), session.live != nil || session.desktop != nil else {
            throw APIError(.conflict, "session \(record.shortID) is not online")
        }
        return (caller, session)
    }

    // MARK: Parsing

    static func date(_ text: String, _ name: String) throws -> Date {
        if let seconds = Double(text) { return Date(timeIntervalSince1970: seconds) }
        let f = ISO8601DateFormatter()
        if let d = f.date(from: text) { return d }
        f.formatOptions = [.withFullDate]
        if let d = f.date(from: text) { return d }
        throw APIError(.badRequest, "\(name) must be an ISO 8601 time (2026-11-25T10:00:00Z), a date or Unix seconds")
    }

    static func int(_ text: Substring?, _ name: String, default value: Int, range: ClosedRange<Int>) throws -> Int {
        guard let text, !text.isEmpty else { return value }
        guard let n = Int(text), range.contains(n) else { throw APIError(.badRequest, "\(name) must be a whole number from \(range.lowerBound) to \(range.upperBound)") }
        return n
    }
}
