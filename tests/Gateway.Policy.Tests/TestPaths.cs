namespace Gateway.Policy.Tests;

internal static class TestPaths
{
    private static readonly Lazy<string> RootLazy = new(() =>
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "Gateway.sln")))
        {
            dir = dir.Parent;
        }
        return dir?.FullName ?? throw new InvalidOperationException("Gateway.sln not found above the test binaries.");
    });

    public static string Root => RootLazy.Value;

    public static string Fixture(string relative) => Path.Combine(Root, "fixtures", "policies", relative);

    public static string Docs(string file) => Fixture(Path.Combine("cilium-docs", file));
}
