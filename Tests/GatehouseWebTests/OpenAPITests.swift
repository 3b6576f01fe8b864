import Foundation
import GatehouseCore
@testable import GatehouseWeb
import XCTest
import Yams

/// docs/api/openapi.yaml must describe exactly the routes the server answers.
final class OpenAPITests: XCTestCase {
    static let documentURL = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent() // GatehouseWebTests
        .deletingLastPathComponent() // Tests
        .deletingLastPathComponent() // package root
        .appendingPathComponent("docs/api/openapi.yaml")

    static let httpMethods: Set<String> = ["get", "put", "post", "delete", "options", "head", "patch", "trace"]

    struct RouteOperation: Hashable, Comparable, CustomStringConvertible {
        var method: String
        var path: String
        var description: String { "\(method.uppercased()) \(path)" }
        static func < (a: Self, b: Self) -> Bool { (a.path, a.method) < (b.path, b.method) }
    }

    /// A YAML mapping with its keys as strings (an unquoted `200:` is an integer key to Yams).
    private static func mapping(_ value: Any?) -> [String: Any]? {
        if let strings = value as? [String: Any] { return strings }
        guard let any = value as? [AnyHashable: Any] else { return nil }
        return Dictionary(any.map { ("\($0.key.base)", $0.value) }, uniquingKeysWith: { first, _ in first })
    }

    private func loadDocument() throws -> [String: Any] {
        let text = try String(contentsOf: Self.documentURL, encoding: .utf8)
        let parsed = try Yams.load(yaml: text)
        return try XCTUnwrap(Self.mapping(parsed), "\(Self.documentURL.path) is not a YAML mapping")
    }

    private func paths(_ document: [String: Any]) throws -> [String: [String: Any]] {
        let raw = try XCTUnwrap(Self.mapping(document["paths"]), "the document has no paths")
        var paths: [String: [String: Any]] = [:]
        for (path, item) in raw {
            paths[path] = try XCTUnwrap(Self.mapping(item), "path item \(path) is not a mapping")
        }
        return paths
    }

    /// Every operation of the document: (method, path) and its definition.
    private func operations(_ document: [String: Any]) throws -> [(RouteOperation, [String: Any])] {
        var result: [(RouteOperation, [String: Any])] = []
        for (path, item) in try paths(document) {
            for (key, value) in item where Self.httpMethods.contains(key.lowercased()) {
                let operation = try XCTUnwrap(Self.mapping(value), "\(key.uppercased()) \(path) is not a mapping")
                result.append((RouteOperation(method: key.lowercased(), path: path), operation))
            }
        }
        return result
    }

    /// A parameter object, following a `$ref` into `#/components/parameters`.
    private func resolveParameter(_ value: Any, in document: [String: Any]) throws -> [String: Any] {
        let parameter = try XCTUnwrap(Self.mapping(value), "a parameter is not a mapping")
        guard let ref = parameter["$ref"] as? String else { return parameter }
        let prefix = "#/components/parameters/"
        XCTAssertTrue(ref.hasPrefix(prefix), "unsupported parameter reference \(ref)")
        let name = String(ref.dropFirst(prefix.count))
        let parameters = Self.mapping(Self.mapping(document["components"])?["parameters"])
        return try XCTUnwrap(Self.mapping(parameters?[name]), "parameter reference \(ref) does not resolve")
    }

    private static func templateNames(_ path: String) -> Set<String> {
        var names: Set<String> = []
        var rest = Substring(path)
        while let open = rest.firstIndex(of: "{"), let close = rest[open...].firstIndex(of: "}") {
            names.insert(String(rest[rest.index(after: open)..<close]))
            rest = rest[rest.index(after: close)...]
        }
        return names
    }

    func testDocumentCoversExactlyTheServedRoutes() throws {
        let document = try loadDocument()
        XCTAssertEqual((document["openapi"] as? String)?.hasPrefix("3.1"), true, "the document must be OpenAPI 3.1")

        let documented = Set(try operations(document).map(\.0))
        let servedList = APIRoutes.all.map { RouteOperation(method: $0.method.lowercased(), path: $0.path) }
        let served = Set(servedList)
        XCTAssertEqual(servedList.count, served.count, "APIRoutes.all lists a route twice")
        XCTAssertFalse(served.isEmpty, "APIRoutes.all is empty")

        let missing = served.subtracting(documented).sorted()
        let extra = documented.subtracting(served).sorted()
        XCTAssertTrue(missing.isEmpty && extra.isEmpty,
                      """
                      docs/api/openapi.yaml does not match APIRoutes.all.
                      served but not documented: \(missing.isEmpty ? "none" : missing.map(\.description).joined(separator: ", "))
                      documented but not served: \(extra.isEmpty ? "none" : extra.map(\.description).joined(separator: ", "))
                      """)
    }

    func testEveryOperationHasAnOperationIdAndResponses() throws {
        let document = try loadDocument()
        var seenIds: [String: RouteOperation] = [:]
        for (operation, definition) in try operations(document) {
            let responses = Self.mapping(definition["responses"]) ?? [:]
            XCTAssertFalse(responses.isEmpty, "\(operation) documents no responses")
            guard let id = definition["operationId"] as? String, !id.isEmpty else {
                XCTFail("\(operation) has no operationId")
                continue
            }
            if let other = seenIds[id] { XCTFail("operationId \(id) is used by both \(other) and \(operation)") }
            seenIds[id] = operation
        }
    }

    func testEveryPathTemplateIsADeclaredPathParameter() throws {
        let document = try loadDocument()
        let paths = try paths(document)
        for (operation, definition) in try operations(document) {
            let item = paths[operation.path] ?? [:]
            // RouteOperation-level parameters override path-level ones of the same name and location.
            var declared: [String: [String: Any]] = [:]
            for raw in (item["parameters"] as? [Any] ?? []) + (definition["parameters"] as? [Any] ?? []) {
                let parameter = try resolveParameter(raw, in: document)
                guard parameter["in"] as? String == "path", let name = parameter["name"] as? String else { continue }
                declared[name] = parameter
            }
            let templates = Self.templateNames(operation.path)
            for name in templates.sorted() {
                guard let parameter = declared[name] else {
                    XCTFail("\(operation): {\(name)} is not declared as a path parameter")
                    continue
                }
                XCTAssertEqual(parameter["required"] as? Bool, true, "\(operation): path parameter \(name) must be required: true")
            }
            for name in Set(declared.keys).subtracting(templates).sorted() {
                XCTFail("\(operation): path parameter \(name) does not appear in the path")
            }
        }
    }

    // MARK: Response schemas against what the encoder writes

    /// The properties and required properties of `#/components/schemas/NAME`.
    private func schemaKeys(_ name: String, in document: [String: Any]) throws -> (all: Set<String>, required: Set<String>) {
        let schemas = Self.mapping(Self.mapping(document["components"])?["schemas"])
        let schema = try XCTUnwrap(Self.mapping(schemas?[name]), "no schema \(name)")
        let properties = try XCTUnwrap(Self.mapping(schema["properties"]), "schema \(name) has no properties")
        return (Set(properties.keys), Set((schema["required"] as? [Any] ?? []).map { "\($0)" }))
    }

    private func encodedKeys(_ value: some Encodable) throws -> Set<String> {
        let data = try JSON.encoder.encode(value)
        let object = try XCTUnwrap(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        return Set(object.keys)
    }

    /// With every optional set the encoder writes all the schema's properties (less `omitted`);
    /// with none set, exactly its required ones.
    private func check(_ name: String, full: some Encodable, minimal: some Encodable, omitted: Set<String> = [],
                       in document: [String: Any], line: UInt = #line) throws {
        let keys = try schemaKeys(name, in: document)
        XCTAssertEqual(try encodedKeys(full), keys.all.subtracting(omitted), "schema \(name): properties", line: line)
        XCTAssertEqual(try encodedKeys(minimal), keys.required, "schema \(name): required", line: line)
    }

    func testResponseSchemasMatchTheEncoding() throws {
        let document = try loadDocument()
        let now = Date()
        let id = "3f2b9c1e-5d4a-4e7b-9a1c-0b6d2e8f4a11"
        let ended = SessionRecord(id: id, user: "alice", asset: "web1", account: "deploy", protocolName: "ssh", remoteAddress: "10.0.0.1",
                                  clientSoftware: "OpenSSH_9.6", program: "shell", started: now, ended: now, state: .terminated,
                                  terminatedBy: "root", reason: "ended by an administrator", recording: "x.cast.gz", bytesIn: 1, bytesOut: 2)
        let failed = SessionRecord(id: id, user: "alice", asset: "web1", account: "deploy", protocolName: "ssh", remoteAddress: "10.0.0.1",
                                   clientSoftware: "OpenSSH_9.6", program: "shell", started: now, state: .failed)
        // `watchers` needs a live channel: it is checked by name only.
        try check("Session", full: SessionJSON(ended, live: nil), minimal: SessionJSON(failed, live: nil), omitted: ["watchers"], in: document)
        XCTAssertTrue(try schemaKeys("Session", in: document).all.contains("watchers"))

        let page = SessionPage(sessions: [], total: 0, page: 1, perPage: 50)
        try check("SessionPage", full: page, minimal: page, in: document)

        let command = CommandRecord(sessionID: id, time: now, offset: 1.5, command: "rm -rf /", output: "", risk: .denied, rule: "#1 rm")
        var plain = command
        plain.rule = nil
        try check("Command", full: CommandJSON(command), minimal: CommandJSON(plain), in: document)

        let activity = try JSONDecoder().decode(ActivityRecord.self, from: Data(#"{"time": 0, "kind": "connected", "detail": "from 10.0.0.1"}"#.utf8))
        try check("Activity", full: activity, minimal: activity, in: document)

        let joined = CollaborationRecord(id: 7, sessionID: id, user: "bob", mode: "watch", remoteAddress: "10.0.0.2", joined: now, left: now)
        let bare = CollaborationRecord(sessionID: id, user: "bob", mode: "watch", remoteAddress: "10.0.0.2", joined: now)
        try check("Collaboration", full: joined, minimal: bare, in: document)

        let transfer = TransferRecord(sessionID: id, time: now, direction: "upload", path: "/tmp/x", bytes: 3, outcome: "ok",
                                      ended: now, sha256: String(repeating: "0", count: 64))
        let bareTransfer = TransferRecord(sessionID: id, time: now, direction: "upload", path: "/tmp/x", bytes: 3, outcome: "incomplete")
        try check("Transfer", full: transfer, minimal: bareTransfer, in: document)

        let share = ShareJSON(code: "abc234defg56", sessionId: id, mode: "read", expires: now, users: [], join: "ssh -t USER@join:abc234defg56@GATEWAY")
        try check("Share", full: share, minimal: share, in: document)

        let terminate = TerminateJSON(terminated: true, id: id, terminatedBy: "root")
        try check("TerminateResponse", full: terminate, minimal: terminate, in: document)
    }
}
