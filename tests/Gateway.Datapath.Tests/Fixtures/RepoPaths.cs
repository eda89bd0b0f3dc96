namespace Gateway.Datapath.Tests;

internal static class RepoPaths
{
    /// <summary>The repository root (the directory holding Gateway.sln), found from the test binary.</summary>
    public static string Root
    {
        get
        {
            for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            {
                if (File.Exists(Path.Combine(dir.FullName, "Gateway.sln")))
                {
                    return dir.FullName;
                }
            }
            throw new InvalidOperationException("Gateway.sln not found above " + AppContext.BaseDirectory);
        }
    }

    public static string Captures => Path.Combine(Root, "fixtures", "captures");
}
