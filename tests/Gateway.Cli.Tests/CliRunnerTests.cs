using System.CommandLine;

namespace Gateway.Cli.Tests;

public class CliRunnerTests
{
    private static (int Code, string Out, string Err) Run(params string[] args) => CliHarness.Run(args);

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
