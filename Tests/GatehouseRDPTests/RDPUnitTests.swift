import Foundation
import XCTest
@testable import GatehouseCore
@testable import GatehouseRDP

final class ClipboardTextTests: XCTestCase {
    func decode(_ format: UInt32, _ bytes: [UInt8]) -> ClipboardText {
        bytes.withUnsafeBytes { ClipboardText(format: format, bytes: $0) }
    }

    func testUnicodeTextStopsAtTheTerminator() {
        let units: [UInt8] = "héllo ✓ 🙂".utf16.flatMap { (u: UInt16) -> [UInt8] in [UInt8(u & 0xFF), UInt8(u >> 8)] }
        let utf16 = units + [0, 0, 0x41, 0]
        let t = decode(ClipboardText.unicodeText, utf16)
        XCTAssertEqual(t.text, "héllo ✓ 🙂")
        XCTAssertEqual(t.byteCount, utf16.count)
    }

    func testOddLengthAndLoneSurrogatesDoNotCrash() {
        XCTAssertEqual(decode(ClipboardText.unicodeText, [0x41, 0x00, 0x42]).text, "A")
        XCTAssertEqual(decode(ClipboardText.unicodeText, [0x00, 0xD8, 0x41, 0x00]).text, "\u{FFFD}A")
    }

    func testEightBitTextIsUTF8OrLatin1() {
        XCTAssertEqual(decode(1, Array("naïve".utf8) + [0]).text, "naïve")
        XCTAssertEqual(decode(1, [0x63, 0x61, 0x66, 0xE9, 0x00]).text, "café")
    }

    func testPreviewIsCut() {
        let t = decode(1, Array(String(repeating: "x", count: 100).utf8))
        XCTAssertEqual(t.characters, 100)
        XCTAssertEqual(t.preview(64), String(repeating: "x", count: 64) + "…")
    }
}

final class RDPPasswordsTests: XCTestCase {
    func testNTHashIsMD4OfUTF16() {
        // The well-known NT hash of "password".
        XCTAssertEqual(RDPPasswords.ntHash("password")?.map { String(format: "%02x", $0) }.joined(), "8846f7eaee8fb117ad06bdd830b7586c")
    }

    func testIssuedPasswordsAreSingleUseAndReplaceEachOther() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("gh-rdp-\(UUID().uuidString).sqlite").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        let store = try SQLiteSessionStore(path: path)
        let first = try RDPPasswords.issue(user: "alice", store: store)
        let second = try RDPPasswords.issue(user: "alice", store: store)
        XCTAssertNotEqual(first.password, second.password)
        XCTAssertEqual(second.password.count, 20)
        XCTAssertFalse(RDPPasswords.consume(user: "alice", password: first.password, store: store), "replaced")
        XCTAssertFalse(RDPPasswords.consume(user: "bob", password: second.password, store: store), "someone else's")
        XCTAssertTrue(RDPPasswords.consume(user: "alice", password: second.password, store: store))
        XCTAssertFalse(RDPPasswords.consume(user: "alice", password: second.password, store: store), "used up")
        let expired = try RDPPasswords.issue(user: "alice", store: store, lifetime: 60, now: Date().addingTimeInterval(-120))
        XCTAssertFalse(RDPPasswords.consume(user: "alice", password: expired.password, store: store), "expired")
    }
}
