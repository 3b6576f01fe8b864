/// What a user typed as their SSH login name: `alice`, `alice@web01` or `alice@deploy@web01`
/// (JumpServer's convention; `#` works as a separator too, for clients that treat `@` specially).
public struct LoginName: Sendable, Equatable {
    public var user: String
    public var account: String?
    public var asset: String?

    public init(user: String, account: String? = nil, asset: String? = nil) {
        self.user = user
        self.account = account
        self.asset = asset
    }

    /// Nil when the name has more parts than `user@account@asset` or an empty part.
    public init?(parsing raw: String) {
        let parts = raw.split(separator: "@", omittingEmptySubsequences: false)
            .flatMap { $0.split(separator: "#", omittingEmptySubsequences: false) }
            .map(String.init)
        guard !parts.contains(where: \.isEmpty) else { return nil }
        switch parts.count {
        case 1: self.init(user: parts[0])
        case 2: self.init(user: parts[0], asset: parts[1])
        case 3: self.init(user: parts[0], account: parts[1], asset: parts[2])
        default: return nil
        }
    }

    /// Names of users, assets and accounts: no separators, nothing a terminal would interpret.
    public static func isValidName(_ name: String) -> Bool {
        !name.isEmpty && name.count <= 64 && name.unicodeScalars.allSatisfy {
            ($0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0))) || $0 == "." || $0 == "_" || $0 == "-"
        }
    }
}
