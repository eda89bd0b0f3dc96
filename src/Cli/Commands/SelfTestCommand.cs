using System.CommandLine;
using System.Diagnostics;
using Gateway.Crypto;

namespace Gateway.Cli;

/// <summary>
/// `gateway selftest`: a self-contained crypto check with live figures. It generates a
/// key pair and a preshared key, runs the published known-answer vectors (the same
/// <see cref="CryptoSelfTest"/> the unit tests use), performs an X25519 agreement between two
/// fresh keys, and measures BLAKE2s and ChaCha20-Poly1305 throughput on this machine.
/// (It was the first `gateway demo`, before the two-node network demo existed.)
/// </summary>
internal static class SelfTestCommand
{
    private static readonly TimeSpan MeasureFor = TimeSpan.FromMilliseconds(300);

    public static Command Create()
    {
        var command = new Command("selftest", "Generate keys, run the crypto known-answer tests and measure BLAKE2s and ChaCha20-Poly1305 speed on this machine.");
        command.SetAction(parseResult => Run(parseResult.InvocationConfiguration.Output));
        return command;
    }

    internal static int Run(TextWriter output)
    {
        bool allPassed = true;
        output.WriteLine("gateway selftest: crypto core self-check");

        using (WireGuardKey privateKey = WireGuardKey.GeneratePrivate())
        using (WireGuardKey publicKey = privateKey.DerivePublic())
        using (WireGuardKey preshared = WireGuardKey.GeneratePreshared())
        {
            output.WriteLine($"  public key      {publicKey.ToBase64()}");
            output.WriteLine("  private key     generated (not shown)");
            output.WriteLine($"  preshared key   generated (not shown, {WireGuardKey.Size} bytes)");
        }

        output.WriteLine("known-answer tests:");
        foreach (CryptoSelfTest.Result result in CryptoSelfTest.Run())
        {
            output.WriteLine($"  {(result.Passed ? "ok  " : "FAIL")}  {result.Name}");
            allPassed &= result.Passed;
        }

        bool agreed = AgreeBetweenTwoFreshKeys();
        output.WriteLine($"  {(agreed ? "ok  " : "FAIL")}  X25519 agreement between two fresh key pairs");
        allPassed &= agreed;

        output.WriteLine($"throughput on this machine (measured now, ~{MeasureFor.TotalMilliseconds:F0} ms each; wall clock, and per CPU-second of this process):");
        (double blakeWall, double blakeCpu) = MeasureBlake2s();
        output.WriteLine($"  BLAKE2s-256, 8 KiB messages:            {blakeWall,8:F0} MB/s   ({blakeCpu:F0} MB/s per CPU-second)");
        (double sealWall, double sealCpu) = MeasureSeal();
        output.WriteLine($"  ChaCha20-Poly1305 seal, 1420 B packets: {sealWall,8:F0} MB/s   ({sealCpu:F0} MB/s per CPU-second)");

        output.WriteLine(allPassed ? "all checks passed" : "SELF-TEST FAILED");
        output.Flush();
        return allPassed ? 0 : 1;
    }

    private static bool AgreeBetweenTwoFreshKeys()
    {
        using WireGuardKey alice = WireGuardKey.GeneratePrivate();
        using WireGuardKey bob = WireGuardKey.GeneratePrivate();
        using WireGuardKey alicePublic = alice.DerivePublic();
        using WireGuardKey bobPublic = bob.DerivePublic();
        Span<byte> s1 = stackalloc byte[X25519.KeySize];
        Span<byte> s2 = stackalloc byte[X25519.KeySize];
        bool ok = X25519.TryAgree(alice.Bytes, bobPublic.Bytes, s1)
            && X25519.TryAgree(bob.Bytes, alicePublic.Bytes, s2)
            && s1.SequenceEqual(s2);
        System.Security.Cryptography.CryptographicOperations.ZeroMemory(s1);
        System.Security.Cryptography.CryptographicOperations.ZeroMemory(s2);
        return ok;
    }

    private static (double Wall, double Cpu) MeasureBlake2s()
    {
        byte[] data = new byte[8192];
        Random.Shared.NextBytes(data);
        byte[] digest = new byte[Blake2s.HashSize];
        return Measure(data.Length, () => Blake2s.Hash(data, digest));
    }

    private static (double Wall, double Cpu) MeasureSeal()
    {
        byte[] keyBytes = new byte[ChaCha20Poly1305Key.KeySize];
        Random.Shared.NextBytes(keyBytes);
        using var key = new ChaCha20Poly1305Key(keyBytes);
        byte[] packet = new byte[1420 + ChaCha20Poly1305Key.TagSize];
        ulong counter = 0;
        return Measure(1420, () => key.Seal(counter++, packet.AsSpan(0, 1420), default, packet));
    }

    /// <summary>
    /// Runs the operation for a short warm-up, then for ~MeasureFor; returns MB/s (10^6 bytes)
    /// by wall clock and by the CPU time the process used meanwhile. On a busy machine the two
    /// differ: the first is what this process got, the second what the code does per core.
    /// </summary>
    private static (double Wall, double Cpu) Measure(int bytesPerCall, Action operation)
    {
        for (int i = 0; i < 200; i++)
        {
            operation();
        }
        long calls = 0;
        TimeSpan cpuStart = Process.GetCurrentProcess().TotalProcessorTime;
        var watch = Stopwatch.StartNew();
        while (watch.Elapsed < MeasureFor)
        {
            for (int i = 0; i < 64; i++)
            {
                operation();
            }
            calls += 64;
        }
        double seconds = watch.Elapsed.TotalSeconds;
        double cpuSeconds = Math.Max((Process.GetCurrentProcess().TotalProcessorTime - cpuStart).TotalSeconds, 1e-6);
        double megabytes = calls * (double)bytesPerCall / 1e6;
        return (megabytes / seconds, megabytes / cpuSeconds);
    }
}
