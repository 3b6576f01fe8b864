/// Users, assets, accounts and the grants between them; answers "may this user reach that
/// account on that asset", and "which ones may they reach".
public struct Directory: Sendable {
    public let config: GatehouseConfig
    private let usersByName: [String: GatehouseConfig.User]
    private let assetsByName: [String: GatehouseConfig.Asset]

    public init(config: GatehouseConfig) {
        self.config = config
        usersByName = Dictionary(config.users.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        assetsByName = Dictionary(config.assets.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
    }

    public func user(named name: String) -> GatehouseConfig.User? { usersByName[name] }
    public func asset(named name: String) -> GatehouseConfig.Asset? { assetsByName[name] }

    /// One account on one asset that a user may use.
    public struct Target: Sendable, Equatable {
        public var asset: GatehouseConfig.Asset
        public var account: GatehouseConfig.Account
        /// What the user's grants on this account allow (the union of the matching grants).
        public var actions: Set<GatehouseConfig.Action> = Set(GatehouseConfig.Action.allCases)
        public var label: String { "\(account.name)@\(asset.name)" }

        public init(asset: GatehouseConfig.Asset, account: GatehouseConfig.Account,
                    actions: Set<GatehouseConfig.Action> = Set(GatehouseConfig.Action.allCases)) {
            self.asset = asset
            self.account = account
            self.actions = actions
        }
    }

    /// The union of what every grant matching this user, asset and account allows.
    public func actions(user: String, asset: String, account: String) -> Set<GatehouseConfig.Action> {
        config.grants.filter { g in
            (g.users.contains(user) || g.users.contains("*"))
                && (g.assets.contains(asset) || g.assets.contains("*"))
                && (g.accounts.isEmpty || g.accounts.contains(account))
        }.reduce(into: Set<GatehouseConfig.Action>()) { $0.formUnion($1.actions) }
    }

    /// Every (asset, account) the user's grants allow, in config order.
    public func targets(for user: String) -> [Target] {
        var result: [Target] = []
        for asset in config.assets {
            for account in asset.accounts where isGranted(user: user, asset: asset.name, account: account.name) {
                result.append(Target(asset: asset, account: account, actions: actions(user: user, asset: asset.name, account: account.name)))
            }
        }
        return result
    }

    public func isGranted(user: String, asset: String, account: String) -> Bool {
        config.grants.contains { g in
            (g.users.contains(user) || g.users.contains("*"))
                && (g.assets.contains(asset) || g.assets.contains("*"))
                && (g.accounts.isEmpty || g.accounts.contains(account))
        }
    }

    public enum RouteError: Error, Equatable, CustomStringConvertible {
        case unknownAsset(String)
        case unknownAccount(asset: String, account: String)
        case noGrant(asset: String, account: String?)
        case ambiguousAccount(asset: String, choices: [String])

        public var description: String {
            switch self {
            case .unknownAsset(let a): return "unknown asset \"\(a)\""
            case .unknownAccount(let a, let acc): return "asset \"\(a)\" has no account \"\(acc)\""
            case .noGrant(let a, let acc?): return "no grant for account \"\(acc)\" on asset \"\(a)\""
            case .noGrant(let a, nil): return "no grant for asset \"\(a)\""
            case .ambiguousAccount(let a, let choices):
                return "several accounts on \"\(a)\" are granted (\(choices.joined(separator: ", "))); log in as user@ACCOUNT@\(a)"
            }
        }
    }

    /// Resolves `user@[account@]asset` to one target, failing closed.
    public func route(user: String, asset assetName: String, account accountName: String?) -> Result<Target, RouteError> {
        guard let asset = asset(named: assetName) else { return .failure(.unknownAsset(assetName)) }
        if let accountName {
            guard let account = asset.accounts.first(where: { $0.name == accountName }) else {
                // Do not tell an ungranted user which accounts exist.
                let anyGrant = asset.accounts.contains { isGranted(user: user, asset: assetName, account: $0.name) }
                return .failure(anyGrant ? .unknownAccount(asset: assetName, account: accountName) : .noGrant(asset: assetName, account: nil))
            }
            guard isGranted(user: user, asset: assetName, account: accountName) else {
                return .failure(.noGrant(asset: assetName, account: accountName))
            }
            return .success(Target(asset: asset, account: account, actions: actions(user: user, asset: assetName, account: accountName)))
        }
        let granted = asset.accounts.filter { isGranted(user: user, asset: assetName, account: $0.name) }
        switch granted.count {
        case 0: return .failure(.noGrant(asset: assetName, account: nil))
        case 1: return .success(Target(asset: asset, account: granted[0], actions: actions(user: user, asset: assetName, account: granted[0].name)))
        default: return .failure(.ambiguousAccount(asset: assetName, choices: granted.map(\.name)))
        }
    }
}
