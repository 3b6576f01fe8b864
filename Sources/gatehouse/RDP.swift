import ArgumentParser
import Foundation
import GatehouseCore
import GatehouseRDP

struct RDPPassword: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rdp-password",
        abstract: "Issue a one-time RDP password for a user (for NLA, e.g. mstsc); printed once, on the last line.",
        discussion: """
            Good for one RDP session, within --minutes. Log in as USER#ASSET with it. Only its NT hash is \
            stored, and deleted when used; a new one replaces the previous one.
            """)
    @OptionGroup var options: ConfigOption
    @Option(help: "The Gatehouse user.") var user: String
    @Option(help: "Minutes it stays valid (1 to 60).") var minutes: Int = 10

    func run() throws {
        let config = try options.load()
        guard config.users.contains(where: { $0.name == user }) else { throw fail("no user \"\(user)\" in \(options.config)") }
        guard (1...60).contains(minutes) else { throw ValidationError("--minutes: 1 to 60") }
        let audit = try openAudit(options)
        let issued = try RDPPasswords.issue(user: user, store: audit.store, lifetime: Double(minutes) * 60)
        let expires = ISO8601DateFormatter().string(from: issued.expires)
        print("one-time RDP password for \(user), valid until \(expires) for one session:")
        print(issued.password)
    }
}
