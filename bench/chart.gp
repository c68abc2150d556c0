# Bar chart of scripts/bench.sh's main figures, one cluster per contestant:
# left, throughput (MiB/s until the object exists); right, the daemon's CPU seconds per GiB.
# Called as: gnuplot -e "datafile='…'; outfile='….png'; n=ROWS; title_suffix='…'" bench/chart.gp
# datafile columns: "contestant" large parallel cpu_large cpu_parallel ("-" = no value).

set terminal pngcairo size 1400,620 font "DejaVu Sans,11" noenhanced
set output outfile
set datafile missing "-"
set key top right
set style data histogram
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set grid ytics
set xtics nomirror
set xrange [-0.6:n - 0.4]
set yrange [0:*]
set offsets 0, 0, graph 0.12, 0

set multiplot layout 1,2 title "s3upfs benchmark: ".title_suffix
set title "Throughput, MiB/s (higher is better)"
plot datafile using 2:xtic(1) title "large file" linecolor rgb "#3b7dd8", \
     ''       using 3 title "8 parallel writers" linecolor rgb "#8fb8ee", \
     ''       using 0:2:(sprintf("%.0f", column(2))) with labels offset -2.2,0.7 notitle, \
     ''       using 0:3:(sprintf("%.0f", column(3))) with labels offset 2.2,0.7 notitle

set title "CPU of the daemon (or uploading process), s per GiB (lower is better)"
plot datafile using 4:xtic(1) title "large file" linecolor rgb "#d8703b", \
     ''       using 5 title "8 parallel writers" linecolor rgb "#eeb48f", \
     ''       using 0:4:(sprintf("%.1f", column(4))) with labels offset -2.2,0.7 notitle, \
     ''       using 0:5:(sprintf("%.1f", column(5))) with labels offset 2.2,0.7 notitle
unset multiplot
