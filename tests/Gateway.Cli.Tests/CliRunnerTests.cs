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

    [Theory]
    [InlineData("-1")]
    [InlineData("1000")]
    [InlineData("many")]
    public void AnOutOfRangeCryptoWorkerCountIsAUsageError(string value)
    {
        var (code, _, err) = Run("up", "/nonexistent/wg0.conf", "--crypto-workers", value);
        Assert.Equal(CliRunner.UsageExitCode, code);
        Assert.Contains("--crypto-workers", err);
        Assert.DoesNotContain("   at ", err);
    }

    [Fact]
    public void UpHelpExplainsTheCryptoWorkers()
    {
        var (code, output, _) = Run("up", "--help");
        Assert.Equal(0, code);
        Assert.Contains("--crypto-workers", output);
        Assert.Contains("one per CPU", output);
    }
}
