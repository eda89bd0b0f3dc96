using System.CommandLine;

namespace Gateway.Cli.Tests;

public class CliRunnerTests
{
    private static (int Code, string Out, string Err) Run(params string[] args)
    {
        var root = new RootCommand("test");
        foreach (var command in CommandCatalog.All())
        {
            root.Subcommands.Add(command);
        }
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        int code = CliRunner.Run(root, args, stdout, stderr);
        return (code, stdout.ToString(), stderr.ToString());
    }

    [Fact]
    public void UnknownOptionIsAUsageErrorWithoutStackTrace()
    {
        var (code, _, err) = Run("--no-such-option");
        Assert.Equal(CliRunner.UsageExitCode, code);
        Assert.Contains("--no-such-option", err);
        Assert.DoesNotContain("   at ", err);
    }

    [Fact]
    public void HelpSucceeds()
    {
        var (code, output, _) = Run("--help");
        Assert.Equal(0, code);
        Assert.Contains("Usage:", output);
    }
}
