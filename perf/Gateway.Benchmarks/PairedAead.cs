namespace Gateway.Benchmarks;

/// <summary>
/// AES-GCM (IPsec's AEAD) against ChaCha20-Poly1305 (WireGuard's) as a paired comparison, the
/// way <see cref="PairedTransport"/> compares engine and AEAD: bursts of the two seals alternate,
/// each round gives one time ratio, the median is reported; load that comes and goes on a shared
/// machine hits both sides of a round alike. Same operations as <see cref="AesGcmBenchmarks"/>.
/// Ratio = AES-GCM time / ChaCha20-Poly1305 time, so AES-GCM is 1/ratio times as fast. The first
/// row of each size pairs the two ChaCha20-Poly1305 implementations instead (ratio = OpenSSL time /
/// libsodium time).
/// <code>dotnet perf/Gateway.Benchmarks/bin/Release/net10.0/Gateway.Benchmarks.dll --paired-aead [ROUNDS]</code>
/// </summary>
internal static class PairedAead
{
    public static int Run(string[] args)
    {
        int rounds = args.Length > 1 && int.TryParse(args[1], out int r) && r > 0 ? r : 300;
        Console.WriteLine($"Paired bursts of 1000 seals, {rounds} rounds per size; ratio = AES-GCM time / ChaCha20-Poly1305 time per round.");
        Console.WriteLine();
        Console.WriteLine("| operation | size | ChaCha20-Poly1305, median | AES-GCM, median | ratio p25 | **ratio median** | ratio p75 | AES-GCM bytes allocated/op |");
        Console.WriteLine("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
        foreach (int size in new[] { 64, 512, 1420 })
        {
            // WireGuard's two ChaCha20-Poly1305 implementations on the same bytes.
            var transport = new CryptoAeadBenchmarks { Size = size };
            transport.Setup();
            try
            {
                PairedTransport.Report("OpenSSL EVP seal vs libsodium seal (ChaCha20-Poly1305)", size, rounds, () => { transport.SealInPlaceLibsodium(); return 0; }, () => { transport.SealInPlaceOpenSsl(); return 0; });
            }
            finally
            {
                transport.Cleanup();
            }
            var bench = new AesGcmBenchmarks { Size = size };
            bench.Setup();
            try
            {
                PairedTransport.Report("AES-GCM seal (AES-NI) vs ChaCha20-Poly1305 seal", size, rounds, () => { bench.ChaCha20Poly1305Seal(); return 0; }, () => { bench.AesGcmSeal(); return 0; });
                PairedTransport.Report(".NET AesGcm (OpenSSL) seal vs ChaCha20-Poly1305 seal", size, rounds, () => { bench.ChaCha20Poly1305Seal(); return 0; }, () => { bench.AesGcmSealDotNet(); return 0; });
                PairedTransport.Report("ESP seal (whole packet) vs ChaCha20-Poly1305 seal", size, rounds, () => { bench.ChaCha20Poly1305Seal(); return 0; }, () => (int)bench.EspSeal());
                PairedTransport.Report("A/A: ChaCha20-Poly1305 vs itself", size, rounds, () => { bench.ChaCha20Poly1305Seal(); return 0; }, () => { bench.ChaCha20Poly1305Seal(); return 0; });
            }
            finally
            {
                bench.Cleanup();
            }
        }
        return 0;
    }
}
