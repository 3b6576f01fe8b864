import ArgumentParser
import Foundation
import GatehouseCore

struct Commands: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "commands",
        abstract: "Search the commands users ran, across all sessions.",
        subcommands: [Search.self])

    struct Search: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Find commands containing TEXT, newest first.")
        @OptionGroup var options: ConfigOption
        @Argument(help: "Text to look for anywhere in the command (empty: all).") var text: String = ""
        @Option(help: "Only this user's commands.") var user: String?
        @Option(help: "Only commands on this asset.") var asset: String?
        @Option(help: "Only this risk: normal, high or denied.") var risk: String?
        @Option(help: "Only commands at or after this date (YYYY-MM-DD or ISO 8601).") var since: String?
        @Option(help: "At most this many.") var limit = 200
        @Flag(help: "JSON output.") var json = false

        func run() throws {
            let audit = try openAudit(options)
            var filter = CommandFilter(text: text.isEmpty ? nil : text, user: user, asset: asset, limit: limit)
            if let risk {
                guard let r = CommandRisk(rawValue: risk) else { throw ValidationError("--risk: expected normal, high or denied") }
                filter.risk = r
            }
            if let since {
                guard let date = parseDate(since) else { throw ValidationError("--since: expected YYYY-MM-DD or an ISO 8601 time") }
                filter.since = date
            }
            let found = try audit.store.searchCommands(filter)
            if json {
                print(try jsonText(found.map { CommandJSON($0.command, user: $0.user, asset: $0.asset, account: $0.account) }))
                return
            }
            printTable(header: ["TIME", "SESSION", "USER", "ASSET", "RISK", "AT", "COMMAND"], rows: found.map { m in
                [formatDate(m.command.time), String(m.command.sessionID.prefix(8)), m.user, m.asset, m.command.risk.rawValue,
                 String(format: "%.1fs", m.command.offset), String(m.command.command.prefix(120))]
            }, empty: "(no commands)")
        }
    }
}

struct CommandJSON: Encodable {
    var sessionID, time: String
    var offsetSeconds: Double
    var command, output, risk: String
    var rule: String?
    var user, asset, account: String?

    init(_ c: CommandRecord, user: String? = nil, asset: String? = nil, account: String? = nil) {
        sessionID = c.sessionID; time = iso(c.time); offsetSeconds = c.offset; command = c.command; output = c.output
        risk = c.risk.rawValue; rule = c.rule; self.user = user; self.asset = asset; self.account = account
    }
}
