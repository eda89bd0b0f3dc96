using System.Diagnostics;
using System.Text.Json;

namespace Gateway.Samples.Tests;

/// <summary>
/// Packs the library projects once (scripts/pack.sh into a fresh folder, a version of its own),
/// and builds and runs samples against that folder only: what a program outside this repository
/// gets from the packages, never the source projects.
/// </summary>
public sealed class PackedPackages : IDisposable
{
    public string Root { get; }
    public string Folder { get; }
    public string Version { get; }

    public PackedPackages()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "Gateway.sln")))
        {
            dir = dir.Parent;
        }
        Root = dir?.FullName ?? throw new InvalidOperationException("Gateway.sln not found above the test binaries");
        Folder = Directory.CreateTempSubdirectory("gateway-packages-").FullName;
        // samples/nuget.config names scripts/pack.sh's default folder; restore refuses a local
        // source that does not exist (NU1301), as on a fresh clone where nobody packed yet.
        Directory.CreateDirectory(Path.Combine(Root, ".build", "packages"));
        Version = $"0.1.0-test.{DateTime.UtcNow:yyyyMMddHHmmss}.{Environment.ProcessId}";
        var (code, output) = Run("bash", ["scripts/pack.sh", Folder, Version], Root, TimeSpan.FromMinutes(9));
        Assert.True(code == 0, $"scripts/pack.sh failed ({code}):\n{output}");
    }

    /// <summary>Restores and builds a sample against the packed folder; returns the built program's path.</summary>
    public string Build(string sample)
    {
        string project = Path.Combine(Root, "samples", sample);
        var (code, output) = Run("dotnet", ["build", project, "-c", "Release", "--nologo", "-v", "quiet", "-tl:off",
            $"-p:GatewayPackageVersion={Version}", $"-p:RestoreAdditionalProjectSources={Folder}"], Root, TimeSpan.FromMinutes(5));
        Assert.True(code == 0, $"building samples/{sample} failed ({code}):\n{output}");

        // Every Gateway library came in as a package of the packed version, none as a project.
        using var assets = JsonDocument.Parse(File.ReadAllText(Path.Combine(project, "obj", "project.assets.json")));
        var libraries = assets.RootElement.GetProperty("libraries").EnumerateObject().ToList();
        var gateway = libraries.Where(l => l.Name.StartsWith("Gateway.", StringComparison.Ordinal)).ToList();
        Assert.NotEmpty(gateway);
        Assert.All(gateway, l =>
        {
            Assert.Equal("package", l.Value.GetProperty("type").GetString());
            Assert.EndsWith("/" + Version, l.Name);
        });
        Assert.DoesNotContain(libraries, l => l.Value.GetProperty("type").GetString() == "project");
        return Path.Combine(project, "bin", "Release", "net10.0", sample + ".dll");
    }

    public static (int Code, string Output) Run(string file, IEnumerable<string> args, string workingDirectory, TimeSpan timeout, string? input = null)
    {
        var start = new ProcessStartInfo(file)
        {
            WorkingDirectory = workingDirectory,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = input is not null,
        };
        foreach (string arg in args)
        {
            start.ArgumentList.Add(arg);
        }
        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        if (input is not null)
        {
            process.StandardInput.Write(input);
            process.StandardInput.Close();
        }
        if (!process.WaitForExit(timeout))
        {
            process.Kill(entireProcessTree: true);
            process.WaitForExit();
            return (-1, $"timed out after {timeout}\n{stdout.Result}{stderr.Result}");
        }
        return (process.ExitCode, stdout.Result + stderr.Result);
    }

    public void Dispose() => Directory.Delete(Folder, recursive: true);
}
