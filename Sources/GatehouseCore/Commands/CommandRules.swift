import Foundation

/// Command rules from the config: regular expressions with an action, scoped by user, asset
/// and account. They guard against mistakes; they are not a sandbox (a script, an alias or an
/// editor gets around any of them).
public struct CommandRule: Sendable {
    public enum Action: String, Sendable, CaseIterable { case deny, warn, allow }

    /// 1-based position in the config, shown to users and auditors.
    public var number: Int
    public var pattern: String
    public var action: Action
    /// Empty means everyone / every asset / every account.
    public var users: [String]
    public var assets: [String]
    public var accounts: [String]
    let regex: NSRegularExpressionBox

    public init(number: Int, pattern: String, action: Action, users: [String] = [], assets: [String] = [], accounts: [String] = []) throws {
        self.number = number
        self.pattern = pattern
        self.action = action
        self.users = users
        self.assets = assets
        self.accounts = accounts
        regex = NSRegularExpressionBox(try NSRegularExpression(pattern: pattern))
    }

    public var label: String { "#\(number) \(pattern)" }

    func applies(user: String, asset: String, account: String) -> Bool {
        (users.isEmpty || users.contains(user)) && (assets.isEmpty || assets.contains(asset))
            && (accounts.isEmpty || accounts.contains(account))
    }

    func matches(_ command: String) -> Bool {
        regex.value.firstMatch(in: command, range: NSRange(command.startIndex..., in: command)) != nil
    }
}

/// NSRegularExpression is immutable and thread-safe, but not marked Sendable.
struct NSRegularExpressionBox: @unchecked Sendable {
    let value: NSRegularExpression
    init(_ value: NSRegularExpression) { self.value = value }
}

/// The rules that apply to one session, in config order; the first match decides.
public struct CommandPolicy: Sendable {
    public let rules: [CommandRule]

    public init(rules: [CommandRule], user: String, asset: String, account: String) {
        self.rules = rules.filter { $0.applies(user: user, asset: asset, account: account) }
    }

    public struct Verdict: Sendable, Equatable {
        public var risk: CommandRisk
        public var rule: String?
        public var denied: Bool { risk == .denied }
    }

    public func judge(_ command: String) -> Verdict {
        guard let rule = rules.first(where: { $0.matches(command) }) else { return Verdict(risk: .normal, rule: nil) }
        switch rule.action {
        case .deny: return Verdict(risk: .denied, rule: rule.label)
        case .warn: return Verdict(risk: .high, rule: rule.label)
        case .allow: return Verdict(risk: .normal, rule: rule.label)
        }
    }
}
